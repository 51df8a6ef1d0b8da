#!/bin/bash
# Registers QEMU's user-mode arm64 emulator with binfmt_misc (needs root: it changes the running kernel), so the
# arm64 test fixture's debootstrap second stage and --init distro's template build for arm64 images can run arm64
# programs on an amd64 host. Uses Debian's registration
# from qemu-user-static (/usr/lib/binfmt.d/qemu-aarch64.conf, flags OPF: F opens the emulator now, so chroots and
# containers without it inside still run arm64 programs). What systemd-binfmt would do at boot, for hosts without it.
set -euo pipefail
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
dir=/proc/sys/fs/binfmt_misc
[ "$(uname -m)" = aarch64 ] && exit 0  # arm64 programs run natively
if [ -e "$dir/qemu-aarch64" ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "register-binfmt: not root; as root run: $0 (registers qemu-aarch64 with binfmt_misc)" >&2
  exit 1
fi
[ -r "$conf" ] || { echo "register-binfmt: $conf missing: apt-get install qemu-user-static" >&2; exit 1; }
[ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir"
[ -e "$dir/qemu-aarch64" ] || grep -v '^#' "$conf" > "$dir/register"
echo "registered qemu-aarch64 with binfmt_misc: $(head -1 "$dir/qemu-aarch64") ($(grep flags "$dir/qemu-aarch64"))"
