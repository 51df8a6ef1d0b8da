#!/bin/bash
# Builds img2vm's static helpers from native/: native/init (PID 1 of the --init img2vm initramfs) for amd64 guests
# and native/init-arm64 for arm64 guests; each a no-op when up to date.
# amd64: musl-gcc (Debian package musl-tools) gives a binary of tens of KiB; gcc -static with glibc works too, only
# larger. arm64: the Debian cross compiler (gcc-aarch64-linux-gnu with libc6-dev-arm64-cross), static glibc; the
# init uses no NSS (it reads /etc/passwd itself), so a static glibc binary needs nothing from the guest.
set -euo pipefail
cd "$(dirname "$0")/../native"
srcs=(*.c)
# shellcheck disable=SC2054,SC2191  # compiler flags: the commas and = are meant literally
flags=(-std=gnu11 -Os -Wall -Wextra -Werror -static -s -ffunction-sections -fdata-sections -Wl,--gc-sections
       -fno-asynchronous-unwind-tables -ffile-prefix-map="$PWD"=native -Wl,--build-id=none)

build() { # OUT COMPILER...
  local out=$1; shift
  if [ -x "$out" ] && [ -z "$(find "${srcs[@]}" ./*.h ../scripts/build-native.sh -newer "$out" 2>/dev/null)" ]; then
    return 0
  fi
  local tmp="$out.tmp.$$"  # concurrent builds (parallel test projects) each rename a whole binary into place
  trap 'rm -f "$tmp"' EXIT
  "$@" "${flags[@]}" -o "$tmp" "${srcs[@]}"
  mv "$tmp" "$out"
  trap - EXIT
  echo "built native/$out with $1 ($(stat -c %s "$out") bytes)"
}

if command -v musl-gcc >/dev/null; then build init musl-gcc; else build init gcc; fi
if command -v aarch64-linux-gnu-gcc >/dev/null; then
  build init-arm64 aarch64-linux-gnu-gcc
elif [ "$(uname -m)" = aarch64 ]; then
  if command -v musl-gcc >/dev/null; then build init-arm64 musl-gcc; else build init-arm64 gcc; fi
else
  echo "native/init-arm64 not built: no aarch64 compiler (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross); arm64 guests need it" >&2
fi
