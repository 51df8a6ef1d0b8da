// Parses --kernel SRC (and --kernel-modules DIR) into a typed kernel source; pure, so every spelling is unit-tested.
import { isAbsolute, resolve } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import { parseSourceRef } from '../source/index.js';

/** Debian stable when this was written; its cloud kernel has virtio, NVMe and ext4 built in or as modules. */
export const DEFAULT_SUITE = 'trixie';

export type KernelSpec =
  /** Debian's linux-image-cloud-amd64 from SUITE plus its -updates and -security suites. */
  | { kind: 'debian-archive'; suite: string }
  /** A kernel .deb on disk, unpacked like one from the archive. */
  | { kind: 'deb'; path: string }
  /** A kernel image file, with the lib/modules/<version> directory that belongs to it (or none: all built in). */
  | { kind: 'vmlinuz'; path: string; modulesDir?: string }
  /** A container image holding a kernel (linuxkit's /kernel + /kernel.tar, or /boot/vmlinuz-* + /lib/modules/*). */
  | { kind: 'image'; ref: string };

export interface ParseKernelOptions {
  /** --kernel-modules DIR; only meaningful with a vmlinuz path. */
  modulesDir?: string;
  /** Base for relative paths; default process.cwd(). */
  cwd?: string;
  /** Lets the caller say that a bare word (no "/" or "./") names an existing file rather than an image. */
  isFile?: (path: string) => boolean;
}

export const ARCHIVE_PREFIX = 'debian-archive';

const IMAGE_TRANSPORT = /^(docker:\/\/|docker-daemon:|docker-archive:|oci:|oci-archive:)/;

function isPathLike(s: string): boolean {
  return s.startsWith('/') || s.startsWith('./') || s.startsWith('../') || s === '.' || s === '..' || /\.deb$/i.test(s);
}

export function parseKernelSource(src: string | undefined, o: ParseKernelOptions = {}): KernelSpec {
  const cwd = o.cwd ?? process.cwd();
  const abs = (p: string): string => (isAbsolute(p) ? resolve(p) : resolve(cwd, p));
  const s = (src ?? '').trim();
  const spec = ((): KernelSpec => {
    if (s === '' || s === ARCHIVE_PREFIX) return { kind: 'debian-archive', suite: DEFAULT_SUITE };
    if (s.startsWith(`${ARCHIVE_PREFIX}:`)) {
      const suite = s.slice(ARCHIVE_PREFIX.length + 1);
      if (!/^[a-z][a-z0-9-]{0,63}$/.test(suite)) {
        throw new Img2vmError(
          'usage',
          `--kernel ${s}: "${suite}" is not a Debian suite name`,
          `e.g. --kernel ${ARCHIVE_PREFIX}:trixie or ${ARCHIVE_PREFIX}:bookworm`,
        );
      }
      return { kind: 'debian-archive', suite };
    }
    if (IMAGE_TRANSPORT.test(s)) {
      parseSourceRef(s);
      return { kind: 'image', ref: s };
    }
    if (isPathLike(s) || o.isFile?.(s)) {
      if (/\.deb$/i.test(s)) return { kind: 'deb', path: abs(s) };
      return o.modulesDir
        ? { kind: 'vmlinuz', path: abs(s), modulesDir: abs(o.modulesDir) }
        : { kind: 'vmlinuz', path: abs(s) };
    }
    if (o.modulesDir) {
      throw new Img2vmError(
        'usage',
        `--kernel ${s} is not a path, so --kernel-modules cannot go with it`,
        `name the kernel file as a path (e.g. --kernel ./${s}), or drop --kernel-modules`,
      );
    }
    parseSourceRef(s);
    return { kind: 'image', ref: s };
  })();
  if (o.modulesDir && spec.kind !== 'vmlinuz') {
    throw new Img2vmError(
      'usage',
      `--kernel-modules only goes with a kernel file (--kernel /path/to/vmlinuz), not with ${describeSpec(spec)}`,
      'drop --kernel-modules: that source brings its own modules',
    );
  }
  return spec;
}

export function describeSpec(spec: KernelSpec): string {
  switch (spec.kind) {
    case 'debian-archive':
      return `Debian's cloud kernel from ${spec.suite}`;
    case 'deb':
      return `the kernel package ${spec.path}`;
    case 'vmlinuz':
      return `the kernel file ${spec.path}${spec.modulesDir ? ` with modules from ${spec.modulesDir}` : ''}`;
    case 'image':
      return `the kernel image ${spec.ref}`;
  }
}
