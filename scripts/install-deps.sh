#!/bin/bash
# Installs the Debian packages img2vm and its tests use, and makes sure a Docker daemon is running.
set -euo pipefail
# One package a line, with what needs it, so every test's and the set-up's needs are named here.
PKGS=(
  docker.io            # the docker builder and daemon sources; tests build fixtures with it
  runc                 # the daemonless runc builder (--builder runc)
  podman               # the podman builder (--builder podman)
  buildah              # img2vm build --builder buildah (a Dockerfile with no daemon); bench/builders.mjs compares it
  qemu-system-x86      # img2vm run/test, boot tests
  qemu-system-common   # /usr/lib/qemu/virtiofsd: the volumes (-v) of img2vm run IMAGE
  qemu-utils           # qemu-img: output formats, checks in tests
  ovmf                 # UEFI firmware for run/test
  e2fsprogs            # mke2fs; e2fsck and debugfs in tests
  fdisk                # sfdisk: tests read partition tables back
  grub-pc-bin          # GRUB for BIOS (boot.img, modules)
  grub-efi-amd64-bin   # GRUB for UEFI
  grub-common          # grub-mkimage
  mtools               # filling the ESP without mounting it
  dosfstools           # mkfs.fat for the ESP
  systemd-boot-efi     # --bootloader systemd-boot when the image has none
  attr                 # setfattr: xattrs in the staged tree
  debootstrap          # the demo image and test fixtures
  openssl              # tests cross-check password hashes
  ca-certificates curl # HTTPS to registries; start-docker.sh pings the daemon
  xz-utils lz4 bzip2 lzop  # kernel decompressors
  zstd                 # zstd layers on a Node.js before 22.15, zstd kernels; the tests make zstd layers with it
  apache2-utils        # htpasswd: the registry-auth e2e test
  docker-registry      # a local registry on 127.0.0.1 for the source and push e2e tests
  skopeo               # the disk-cache e2e test reads the disk artifacts img2vm pushes with another client
  catatonit            # the pause process of podman pods: examples/kubernetes-job.yaml under podman kube play
  time                 # GNU time: peak memory in the benchmarks
  extlinux syslinux-common  # the classic loop-mount pipeline npm run bench compares against
  gpgv debian-archive-keyring  # verifying the Debian archive img2vm fetches kernels from
  kmod                 # depmod: modules.dep for fetched kernels (Debian's packages ship none)
  gnupg                # the fake signed mirror in the kernel-fetch tests
  musl-tools gcc       # musl-gcc (a gcc wrapper): img2vm's own init (native/), small and static
  cpio                 # tests list the initramfs img2vm writes
  shellcheck           # tests lint the templates' shell scripts
  busybox-static       # a userland with no distribution template, for the --init img2vm tests
  bsdutils             # script: tests type Ctrl-C into img2vm run through a pseudo-terminal
  openssh-client       # ssh, ssh-keygen, ssh-keyscan: the SSH login e2e tests
  procps util-linux    # ps and mount: the interrupt e2e tests look for children left, the full-disk ones mount small tmpfs
  libarchive-tools     # bsdtar: a layer producer in the producer-matrix e2e test
  golang-go            # Go's archive/tar: a layer producer in the producer-matrix e2e test (compiled at test time)
  cryptsetup-bin       # the LUKS2 tests read what img2vm writes: luksDump, open --test-passphrase, luksAddKey
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross  # img2vm's own init cross-built for arm64 disks (scripts/build-native.sh)
  qemu-system-arm      # qemu-system-aarch64: img2vm run/test on arm64 disks, the arm64 boot tests
  qemu-efi-aarch64     # AAVMF: UEFI firmware for arm64 guests
  qemu-user-static     # arm64 programs under emulation: the arm64 test fixture's debootstrap second stage, --init distro for arm64 images
  python3              # Python's tarfile: a layer producer in the producer-matrix e2e test; it also materialises the tree
)
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
# arm64 programs under emulation for the arm64 Debian fixture's second stage and --init distro for arm64 images:
# changes the running kernel (root).
bash "$(dirname "$0")/register-binfmt.sh" || echo "warning: qemu-aarch64 is not registered with binfmt_misc; the arm64 Debian fixture cannot be built and --init distro refuses arm64 images" >&2
bash "$(dirname "$0")/start-docker.sh"
