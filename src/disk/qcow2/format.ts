// The qcow2 v3 on-disk encoding Qcow2Target writes: constants, the header with its feature-name table, and table entries.

export const CLUSTER_BITS = 16;
/** 64 KiB, qemu-img's default: the unit of allocation and of every table. */
export const CLUSTER = 1 << CLUSTER_BITS;
/** 8-byte entries per L2 table; one L2 table maps 512 MiB of the virtual disk. */
export const L2_ENTRIES = CLUSTER / 8;
/** refcount_order 4: 16-bit refcounts, qemu-img's default. */
export const REFCOUNT_ORDER = 4;
export const REFCOUNTS_PER_BLOCK = CLUSTER / 2;
/** Host cluster indexes are kept as Uint32, so the file (and the virtual disk) stay below 2^32 clusters = 256 TiB. */
export const MAX_CLUSTERS = 2 ** 32 - 1;

const MAGIC = 0x514649fb;
/** The v3 header up to and including compression_type, padded to 8 bytes, as qemu 5.1+ writes it. */
export const HEADER_LENGTH = 112;
const EXT_FEATURE_NAMES = 0x6803f857;
const FEATURE_NAME_LEN = 46;

/**
 * The feature-name table qemu-img writes, so that tools print names rather than bit numbers for any flag a later
 * writer sets. Type 0 = incompatible, 1 = compatible, 2 = autoclear; the names are the ones the qcow2 spec gives.
 */
const FEATURE_NAMES: ReadonlyArray<readonly [type: number, bit: number, name: string]> = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

/** Where close() put the tables; everything the header must point at. */
export interface HeaderFields {
  virtualSize: number;
  l1Size: number;
  l1Offset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
}

function u64(b: Buffer, at: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / 2 ** 32), at);
  b.writeUInt32BE(v % 2 ** 32, at + 4);
}

/**
 * Cluster 0: the header, then the feature-name extension and the end-of-extensions marker, zero-padded to a cluster.
 * All feature bits are clear: no dirty bit (the image is consistent when written), lazy_refcounts off (qemu-img's
 * default; it only matters to a writer that crashes), no bitmaps, no external data file, zlib compression.
 */
export function encodeHeader(h: HeaderFields): Buffer {
  const b = Buffer.alloc(CLUSTER);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt32BE(3, 4);
  // 8..19: no backing file
  b.writeUInt32BE(CLUSTER_BITS, 20);
  u64(b, 24, h.virtualSize);
  // 32: crypt_method 0
  b.writeUInt32BE(h.l1Size, 36);
  u64(b, 40, h.l1Offset);
  u64(b, 48, h.refcountTableOffset);
  b.writeUInt32BE(h.refcountTableClusters, 56);
  // 60..95: no snapshots; incompatible, compatible and autoclear features all 0
  b.writeUInt32BE(REFCOUNT_ORDER, 96);
  b.writeUInt32BE(HEADER_LENGTH, 100);
  // 104: compression_type 0 (zlib), 105..111 padding
  let at = HEADER_LENGTH;
  b.writeUInt32BE(EXT_FEATURE_NAMES, at);
  b.writeUInt32BE(FEATURE_NAMES.length * (2 + FEATURE_NAME_LEN), at + 4);
  at += 8;
  for (const [type, bit, name] of FEATURE_NAMES) {
    b[at] = type;
    b[at + 1] = bit;
    b.write(name, at + 2, FEATURE_NAME_LEN, 'latin1');
    at += 2 + FEATURE_NAME_LEN;
  }
  // then 8 zero bytes: the end-of-extensions marker (already zero)
  return b;
}

/** Bit 63 of L1/L2 entries: refcount is exactly 1, so the cluster may be written in place. */
const COPIED_HI = 0x8000_0000;
const COMPRESSED_HI = 0x4000_0000;
/** x = 62 - (cluster_bits - 8): the compressed descriptor's sector count starts at bit 54 (bit 22 of the high word). */
const CSIZE_SHIFT_HI = 22;
const CSECTOR = 512;

/** A standard L1 or L2 entry: a cluster-aligned host offset with refcount 1. */
export function writeStandardEntry(b: Buffer, at: number, hostCluster: number): void {
  const off = hostCluster * CLUSTER;
  b.writeUInt32BE((COPIED_HI | Math.floor(off / 2 ** 32)) >>> 0, at);
  b.writeUInt32BE(off % 2 ** 32, at + 4);
}

/**
 * A compressed-cluster descriptor: the byte offset of the deflate stream and the number of 512-byte sectors it
 * reaches into beyond the one holding its first byte (readers fetch whole sectors and stop once a cluster is out).
 */
export function writeCompressedEntry(b: Buffer, at: number, offset: number, length: number): void {
  const extra = compressedExtraSectors(offset, length);
  b.writeUInt32BE((COMPRESSED_HI | (extra << CSIZE_SHIFT_HI) | Math.floor(offset / 2 ** 32)) >>> 0, at);
  b.writeUInt32BE(offset % 2 ** 32, at + 4);
}

export function compressedExtraSectors(offset: number, length: number): number {
  return Math.floor((offset + length - 1) / CSECTOR) - Math.floor(offset / CSECTOR);
}

/** The host byte range a reader (and qemu-img check's refcounting) attributes to a compressed cluster: whole sectors. */
export function compressedSpan(offset: number, length: number): { start: number; end: number } {
  return { start: offset, end: (Math.floor(offset / CSECTOR) + compressedExtraSectors(offset, length) + 1) * CSECTOR };
}
