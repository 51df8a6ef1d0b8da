#!/bin/bash
# Installs the Debian packages img2vm and its tests use, and makes sure a Docker daemon is running.
set -euo pipefail
PKGS=(docker.io qemu-system-x86 qemu-utils e2fsprogs fdisk grub-pc-bin grub-efi-amd64-bin grub-common
      mtools dosfstools ovmf debootstrap attr openssl ca-certificates curl xz-utils zstd lz4 bzip2 lzop systemd-boot-efi
      time)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash "$(dirname "$0")/start-docker.sh"
