// The 256-byte on-disk inode: fields, nanosecond timestamps with epoch bits, and its checksum.
import type { Timestamp } from '../../rootfs/tree.js';
import { crc32c, crc32cU32 } from '../../core/crc32c.js';
import { EXTRA_ISIZE, INODE_SIZE } from './geometry.js';

export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFDIR = 0o040000;
export const S_IFBLK = 0o060000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFSOCK = 0o140000;

export const EXTENTS_FL = 0x80000;
export const INDEX_FL = 0x1000;

/** Where the in-inode xattr area starts (after the 128-byte base inode and the 32 extra bytes). */
export const XATTR_IBODY_OFFSET = 128 + EXTRA_ISIZE;

export interface InodeFields {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime: Timestamp;
  ctime: Timestamp;
  mtime: Timestamp;
  crtime: Timestamp;
  links: number;
  /** i_blocks in 512-byte units (huge_file without HUGE_FILE_FL). */
  sectors: number;
  flags: number;
  /** The 60-byte i_block: extent root, fast symlink target or device numbers. */
  iblock?: Uint8Array;
  /** External xattr block, 0 for none. */
  fileAcl: number;
  /** The in-inode xattr area (magic first), at most INODE_SIZE - XATTR_IBODY_OFFSET bytes. */
  ibodyXattrs?: Uint8Array;
  /** 0 only for the old reserved inodes mke2fs leaves at the base size. */
  extraIsize?: number;
}

const TWO32 = 2 ** 32;
const TWO31 = 2 ** 31;
/** Earliest second ext4 stores (1901-12-13T20:45:52Z): the seconds field read as signed 32 bits, epoch bits 0. */
export const MIN_TIME = -TWO31;
/**
 * Latest second ext4 stores (2446-05-10T22:38:55Z): epoch bits 3 and seconds field 0x7fffffff, the kernel's
 * EXT4_EXTRA_TIMESTAMP_MAX. Times outside MIN_TIME..MAX_TIME are written as that second with 0 nanoseconds, as
 * Linux's timestamp_truncate() (fs/inode.c) stores what utimensat() asks of an ext4 file: what `tar -x` onto a
 * mounted ext4 would have made of them.
 */
export const MAX_TIME = 4 * TWO32 - TWO31 - 1;

/**
 * The seconds the two readers of ext4 disagree on: epoch bits 3 with the sign bit of the seconds field set,
 * 2310-04-04T16:10:40Z (AMBIGUOUS_FROM) to 2378-04-22T19:24:47Z (AMBIGUOUS_TO - 1).
 *
 * - Linux reads every encoding one way (fs/ext4/ext4.h, ext4_decode_extra_time(), the same in 6.1 and since): the
 *   seconds field as signed 32 bits plus the epoch bits times 2^32, so 1901 to 2446 all read back exactly.
 * - e2fsck (e2fsck/pass1.c, check_inode_extra_space() with check_inode_extra_negative_epoch(); 1.47.0 on bookworm,
 *   unchanged up to 1.47.4) takes epoch bits 3 with that sign bit for the pre-1970 encoding of old kernels and,
 *   while the checking machine's clock is before 2242 (EXT4_EXTRA_NEGATIVE_DATE_CUTOFF), clears the epoch bits:
 *   "Timestamp(s) on inode N beyond 2310-04-04 are likely pre-1970". The problem may be fixed when preening, so
 *   `e2fsck -fp` (a boot-time check) silently turns a file of 2344 into one of 1935; `e2fsck -fn` reports it.
 *
 * A disk must not change under a routine fsck, so a time in this range is written as the nearer edge that both
 * read alike: 2310-04-04T16:10:39.999999999Z just before it, or 2378-04-22T19:24:48Z just after it. 2378 to 2446
 * (epoch bits 3, sign bit clear) is written exactly: e2fsck leaves it alone and Linux reads it exactly.
 */
export const AMBIGUOUS_FROM = 3 * TWO32 - TWO31;
export const AMBIGUOUS_TO = 3 * TWO32;

/** The 32-bit seconds field and the extra field (nanoseconds << 2 | epoch bits) of a timestamp. */
export function encodeTime(t: Timestamp): [number, number] {
  let sec = Math.trunc(t.sec);
  const ns = Math.trunc(t.nsec);
  // NaN nanoseconds are 0, never NaN arithmetic that would lose the epoch bits.
  let nsec = ns > 0 ? Math.min(999_999_999, ns) : 0;
  // Out of range (a NaN second too) becomes the nearest second ext4 holds, never a wrapped one.
  if (!(sec >= MIN_TIME)) [sec, nsec] = [MIN_TIME, 0];
  else if (sec > MAX_TIME) [sec, nsec] = [MAX_TIME, 0];
  else if (sec >= AMBIGUOUS_FROM && sec < AMBIGUOUS_TO) {
    [sec, nsec] = sec - AMBIGUOUS_FROM < AMBIGUOUS_TO - sec ? [AMBIGUOUS_FROM - 1, 999_999_999] : [AMBIGUOUS_TO, 0];
  }
  const epoch = Math.floor((sec + TWO31) / TWO32);
  const lo = sec - epoch * TWO32;
  return [lo | 0, (nsec * 4 + epoch) >>> 0];
}

/** The checksum seed of an inode's own structures (extent blocks, directory blocks): crc over number and generation 0. */
export function inodeSeed(fsSeed: number, ino: number): number {
  return crc32cU32(crc32cU32(fsSeed, ino), 0);
}

/** Encodes an inode into buf at off (INODE_SIZE bytes, previously zero) and sets its checksum. */
export function encodeInode(buf: Buffer, off: number, f: InodeFields, ino: number, fsSeed: number): void {
  const extra = f.extraIsize ?? EXTRA_ISIZE;
  buf.writeUInt16LE(f.mode & 0xffff, off);
  buf.writeUInt16LE(f.uid & 0xffff, off + 0x02);
  buf.writeUInt32LE(f.size % TWO32, off + 0x04);
  const [at, atx] = encodeTime(f.atime);
  const [ct, ctx] = encodeTime(f.ctime);
  const [mt, mtx] = encodeTime(f.mtime);
  const [cr, crx] = encodeTime(f.crtime);
  buf.writeInt32LE(at, off + 0x08);
  buf.writeInt32LE(ct, off + 0x0c);
  buf.writeInt32LE(mt, off + 0x10);
  buf.writeUInt16LE(f.gid & 0xffff, off + 0x18);
  buf.writeUInt16LE(f.links, off + 0x1a);
  buf.writeUInt32LE(f.sectors % TWO32, off + 0x1c);
  buf.writeUInt32LE(f.flags >>> 0, off + 0x20);
  if (f.iblock) buf.set(f.iblock, off + 0x28);
  buf.writeUInt32LE(f.fileAcl % TWO32, off + 0x68);
  buf.writeUInt32LE(Math.floor(f.size / TWO32), off + 0x6c);
  buf.writeUInt16LE(Math.floor(f.sectors / TWO32), off + 0x74);
  buf.writeUInt16LE(Math.floor(f.fileAcl / TWO32), off + 0x76);
  buf.writeUInt16LE(f.uid >>> 16, off + 0x78);
  buf.writeUInt16LE(f.gid >>> 16, off + 0x7a);
  if (extra > 0) {
    buf.writeUInt16LE(extra, off + 0x80);
    buf.writeUInt32LE(ctx, off + 0x84);
    buf.writeUInt32LE(mtx, off + 0x88);
    buf.writeUInt32LE(atx, off + 0x8c);
    buf.writeInt32LE(cr, off + 0x90);
    buf.writeUInt32LE(crx, off + 0x94);
    if (f.ibodyXattrs) buf.set(f.ibodyXattrs, off + 128 + extra);
  }
  let c = inodeSeed(fsSeed, ino);
  c = crc32c(c, buf, off, off + INODE_SIZE);
  buf.writeUInt16LE(c & 0xffff, off + 0x7c);
  if (extra >= 4) buf.writeUInt16LE(c >>> 16, off + 0x82);
}
