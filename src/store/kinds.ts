// The kinds of entry the store keeps, what keys each, and where each kind's entries live under the store's root.

export type Kind = 'blob' | 'kernel' | 'build' | 'disk';

/** A registry blob (layer, manifest, config): "sha256:" and the 64 hex digits of its bytes' SHA-256. */
export type BlobKey = `sha256:${string}`;
/**
 * A kernel bundle (kernel.json, boot/, lib/modules/), by the source it was unpacked from: "sha256-" and the hex
 * SHA-256 of the .deb (from the archive or a local file), or "image-" and the hex id of the container image.
 */
export type KernelKey = `${'sha256' | 'image'}-${string}`;
/** A guest build (build.json, config.json, layer.tar): hex SHA-256 over builder and version, base image and template bytes (build/key.ts). */
export type BuildKey = string;
/**
 * A converted disk: hex SHA-256 over everything that decides its bytes (the plan as data, the digests of the source
 * layers and of the kernel and init, img2vm's version): the fields are listed in disk-key.ts.
 */
export type DiskKey = string;

export interface KeyOf {
  blob: BlobKey;
  kernel: KernelKey;
  build: BuildKey;
  disk: DiskKey;
}

export interface KindLayout {
  /** The kind's directory, relative to the store's root. */
  dir: string;
  /** A blob is one file; the other kinds are directories (published whole by one rename). */
  shape: 'file' | 'dir';
  /** The key spelled as a file name; undefined when the key is malformed. */
  name(key: string): string | undefined;
  /** The key of an entry's file name; undefined for names that are not entries (temp names of older versions). */
  key(name: string): string | undefined;
}

const HEX64 = /^[0-9a-f]{64}$/;
const KERNEL = /^(sha256|image)-[0-9a-f]{64}$/;
const same = (re: RegExp) => (s: string) => (re.test(s) ? s : undefined);

/**
 * Each kind keeps the directory it had before the store was one, so a cache made by an earlier img2vm stays
 * valid (and its kernels and blobs are not fetched again).
 */
export const LAYOUT: Record<Kind, KindLayout> = {
  blob: {
    dir: 'blobs/sha256',
    shape: 'file',
    name: (k) => (k.startsWith('sha256:') && HEX64.test(k.slice(7)) ? k.slice(7) : undefined),
    key: (n) => (HEX64.test(n) ? `sha256:${n}` : undefined),
  },
  kernel: { dir: 'kernels/trees', shape: 'dir', name: same(KERNEL), key: same(KERNEL) },
  build: { dir: 'builds/runc', shape: 'dir', name: same(HEX64), key: same(HEX64) },
  disk: { dir: 'disks', shape: 'dir', name: same(HEX64), key: same(HEX64) },
};

/** In the order prune takes them: guest builds first (an image store refuses to drop an image a build stands on). */
export const KINDS: readonly Kind[] = ['build', 'disk', 'blob', 'kernel'];

export function isKind(s: string): s is Kind {
  return Object.hasOwn(LAYOUT, s);
}

/** Names of locks that are not an entry's key (a kernel index record, the kernel memory): the same safe alphabet. */
export const LOCK_NAME = /^[A-Za-z0-9_-]{1,100}$/;
