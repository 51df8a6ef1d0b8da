// CRC-32C (Castagnoli), the one implementation: every ext4 metadata_csum structure, the jbd2 superblock, VHDX
// headers and logs; slicing-by-8 tables. (Plain CRC-32, for GPT, is Node's zlib.crc32.)

const POLY = 0x82f63b78;
const T = new Uint32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n]!;
  for (let t = 1; t < 8; t++) {
    c = T[c & 0xff]! ^ (c >>> 8);
    T[t * 256 + n] = c;
  }
}

/**
 * ext4's crc32c_le: the running register in and out, with no final inversion (callers start from
 * ~0 or a seed, as the kernel does), so checksums chain over several buffers.
 */
export function crc32c(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = crc >>> 0;
  let i = start;
  const stop8 = end - ((end - start) & 7);
  while (i < stop8) {
    const a = (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24)) ^ c;
    c =
      T[1792 + (a & 0xff)]! ^
      T[1536 + ((a >>> 8) & 0xff)]! ^
      T[1280 + ((a >>> 16) & 0xff)]! ^
      T[1024 + (a >>> 24)]! ^
      T[768 + buf[i + 4]!]! ^
      T[512 + buf[i + 5]!]! ^
      T[256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = T[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

const U32 = Buffer.alloc(4);

/** crc32c over one little-endian u32 (inode numbers, generations, group numbers). */
export function crc32cU32(crc: number, v: number): number {
  U32.writeUInt32LE(v >>> 0, 0);
  return crc32c(crc, U32);
}

/** The standard CRC-32C of a buffer (initial ~0, final inversion), as VHDX and iSCSI define it. */
export function crc32cOf(buf: Uint8Array): number {
  return (crc32c(0xffffffff, buf) ^ 0xffffffff) >>> 0;
}
