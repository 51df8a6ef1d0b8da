#!/bin/bash
# Sets up img2vm on a fresh Debian 12 machine (as root) and converts the built-in demo image into demo.qcow2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm ci --no-audit --no-fund
npm run -s build
bash scripts/build-native.sh
# The demo image: Debian bookworm (minbase) made by debootstrap and imported into the local daemon.
bash fixtures/debian-image.sh img2vm-demo:bookworm bookworm
bin/img2vm img2vm-demo:bookworm -o demo.qcow2 --password img2vm
cat <<MSG

demo.qcow2 is ready (root password: img2vm). Boot it:
  bin/img2vm run demo.qcow2        # serial console here; Ctrl-a x quits
or with QEMU directly:
  qemu-system-x86_64 -m 1024 -nographic -nic none -drive file=demo.qcow2,if=virtio
MSG
