#!/bin/bash
# Builds img2vm's static helpers from native/ (native/init, PID 1 of the --init img2vm initramfs); a no-op when up to date.
# musl-gcc (Debian package musl-tools) gives a binary of tens of KiB; gcc -static with glibc works too, only larger.
set -euo pipefail
cd "$(dirname "$0")/../native"
out=init
srcs=(*.c)
if [ -x "$out" ] && [ -z "$(find "${srcs[@]}" ./*.h ../scripts/build-native.sh -newer "$out" 2>/dev/null)" ]; then
  exit 0
fi
if command -v musl-gcc >/dev/null; then cc=(musl-gcc); else cc=(gcc); fi
flags=(-std=gnu11 -Os -Wall -Wextra -Werror -static -s -ffunction-sections -fdata-sections -Wl,--gc-sections
       -fno-asynchronous-unwind-tables -ffile-prefix-map="$PWD"=native -Wl,--build-id=none)
tmp="$out.tmp.$$"  # concurrent builds (parallel test projects) each rename a whole binary into place
trap 'rm -f "$tmp"' EXIT
"${cc[@]}" "${flags[@]}" -o "$tmp" "${srcs[@]}"
mv "$tmp" "$out"
echo "built native/$out with ${cc[0]} ($(stat -c %s "$out") bytes)"
