#!/bin/sh
# The CI job the GitHub action (action.yml) runs, also usable as is in any CI: convert IMAGE into OUTPUT, then
# smoke-test the disk under QEMU (TCG when there is no KVM). Inputs come from the environment:
#   IMG2VM_IMAGE   the image (any transport img2vm reads)          IMG2VM_OUTPUT  the disk to write (default disk.qcow2)
#   IMG2VM_FORMAT  the format (default: from OUTPUT's extension)   IMG2VM_TEST    true (default) or false
#   IMG2VM_ARGS    more convert options, split on spaces (e.g. --seed ci --cache-from REG/REPO --push REG/REPO:TAG)
#   IMG2VM_TEST_ARGS  options of img2vm test (default: --timeout 900)
#   IMG2VM         the img2vm command (default: img2vm on PATH)
set -eu
: "${IMG2VM_IMAGE:?set IMG2VM_IMAGE to the image to convert}"
output=${IMG2VM_OUTPUT:-disk.qcow2}
img2vm=${IMG2VM:-img2vm}
set -- "$IMG2VM_IMAGE" -o "$output"
if [ -n "${IMG2VM_FORMAT:-}" ]; then set -- "$@" --format "$IMG2VM_FORMAT"; fi
# shellcheck disable=SC2086 # IMG2VM_ARGS is a list of options on purpose
set -- "$@" ${IMG2VM_ARGS:-}
echo "img2vm $*"
"$img2vm" "$@"
if [ "${IMG2VM_TEST:-true}" = true ]; then
  # shellcheck disable=SC2086
  "$img2vm" test "$output" ${IMG2VM_TEST_ARGS:---timeout 900}
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "disk=$output" >>"$GITHUB_OUTPUT"; fi
