// The 256-byte on-disk inode: fields, nanosecond timestamps with epoch bits, and its checksum.
import type { Timestamp } from '../../rootfs/tree.js';
import { crc32c, crc32cU32 } from './crc32c.js';
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
/** Earliest second ext4 stores: the 32-bit signed field with epoch bits 0. */
export const MIN_TIME = -(2 ** 31);
/**
 * Latest second stored here. The format reaches 2446, but e2fsck (until 2242) treats epoch bits 3
 * with the sign bit set as an old pre-1970 encoding and "fixes" it, so times stop before that
 * range (year 2310).
 */
export const MAX_TIME = 3 * TWO32 - 2 ** 31 - 1;

/** The 32-bit seconds field and the extra field (nanoseconds << 2 | epoch bits) of a timestamp. */
export function encodeTime(t: Timestamp): [number, number] {
  const sec = Math.min(MAX_TIME, Math.max(MIN_TIME, Math.trunc(t.sec)));
  const nsec = Math.min(999_999_999, Math.max(0, Math.trunc(t.nsec)));
  const epoch = Math.floor((sec + 2 ** 31) / TWO32);
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
