// The superblock and the group descriptor table, with the feature set GRUB 2.06 and Linux 6.1 both read.
import { crc32c, crc32cU32 } from '../../core/crc32c.js';
import { BLOCK, BLOCKS_PER_GROUP, DESC_SIZE, FIRST_INO, INODE_SIZE, EXTRA_ISIZE, JOURNAL_INO } from './geometry.js';

const COMPAT_HAS_JOURNAL = 0x4;
const COMPAT_EXT_ATTR = 0x8;
const COMPAT_RESIZE_INODE = 0x10;
const COMPAT_DIR_INDEX = 0x20;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_EXTENTS = 0x40;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_FLEX_BG = 0x200;
const RO_SPARSE_SUPER = 0x1;
const RO_LARGE_FILE = 0x2;
const RO_HUGE_FILE = 0x8;
const RO_DIR_NLINK = 0x20;
const RO_EXTRA_ISIZE = 0x40;
const RO_METADATA_CSUM = 0x400;

export const COMPAT = COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR | COMPAT_RESIZE_INODE | COMPAT_DIR_INDEX;
export const INCOMPAT = INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG;
export const RO_COMPAT =
  RO_SPARSE_SUPER | RO_LARGE_FILE | RO_HUGE_FILE | RO_DIR_NLINK | RO_EXTRA_ISIZE | RO_METADATA_CSUM;

export const BG_INODE_UNINIT = 0x1;
export const BG_BLOCK_UNINIT = 0x2;
export const BG_INODE_ZEROED = 0x4;

/** The flag mke2fs sets on x86, where char is signed: directory hashes use the signed-char variant. */
const FLAGS_SIGNED_HASH = 0x1;
const MOUNT_USER_XATTR = 0x4;
const MOUNT_ACL = 0x8;
const LOG_GROUPS_PER_FLEX = 4;

export interface SuperParams {
  blocks: number;
  inodes: number;
  inodesPerGroup: number;
  reservedBlocks: number;
  freeBlocks: number;
  freeInodes: number;
  reservedGdtBlocks: number;
  uuid: Uint8Array;
  label: Uint8Array;
  hashSeed: Uint8Array;
  epoch: number;
  /** The journal inode's i_block, backed up in s_jnl_blocks. */
  journalIBlock: Uint8Array;
  journalBytes: number;
  overheadBlocks: number;
}

/** The checksum seed of every metadata structure: crc32c over the UUID (no metadata_csum_seed feature). */
export function fsChecksumSeed(uuid: Uint8Array): number {
  return crc32c(0xffffffff, uuid);
}

function time32(b: Buffer, off: number, hiOff: number, t: number): void {
  const s = Math.max(0, Math.trunc(t));
  b.writeUInt32LE(s % 2 ** 32, off);
  b.writeUInt8(Math.min(255, Math.floor(s / 2 ** 32)), hiOff);
}

/** The 1024-byte superblock as stored in group `group` (0 for the primary). */
export function superblock(p: SuperParams, group: number): Buffer {
  const b = Buffer.alloc(1024);
  const lo = (v: number): number => v % 2 ** 32;
  const hi = (v: number): number => Math.floor(v / 2 ** 32);
  b.writeUInt32LE(p.inodes, 0x00);
  b.writeUInt32LE(lo(p.blocks), 0x04);
  b.writeUInt32LE(lo(p.reservedBlocks), 0x08);
  b.writeUInt32LE(lo(p.freeBlocks), 0x0c);
  b.writeUInt32LE(p.freeInodes, 0x10);
  b.writeUInt32LE(0, 0x14); // s_first_data_block
  b.writeUInt32LE(2, 0x18); // log2(4096) - 10
  b.writeUInt32LE(2, 0x1c);
  b.writeUInt32LE(BLOCKS_PER_GROUP, 0x20);
  b.writeUInt32LE(BLOCKS_PER_GROUP, 0x24);
  b.writeUInt32LE(p.inodesPerGroup, 0x28);
  time32(b, 0x30, 0x274, p.epoch); // s_wtime
  b.writeUInt16LE(0, 0x34); // s_mnt_count
  b.writeInt16LE(-1, 0x36); // s_max_mnt_count: no forced checks
  b.writeUInt16LE(0xef53, 0x38);
  b.writeUInt16LE(1, 0x3a); // clean
  b.writeUInt16LE(1, 0x3c); // errors: continue
  time32(b, 0x40, 0x277, p.epoch); // s_lastcheck
  b.writeUInt32LE(0, 0x48); // Linux
  b.writeUInt32LE(1, 0x4c); // dynamic revision
  b.writeUInt32LE(FIRST_INO, 0x54);
  b.writeUInt16LE(INODE_SIZE, 0x58);
  b.writeUInt16LE(group, 0x5a);
  b.writeUInt32LE(COMPAT, 0x5c);
  b.writeUInt32LE(INCOMPAT, 0x60);
  b.writeUInt32LE(RO_COMPAT, 0x64);
  b.set(p.uuid, 0x68);
  b.set(p.label.subarray(0, 16), 0x78);
  b.writeUInt16LE(p.reservedGdtBlocks, 0xce);
  b.writeUInt32LE(JOURNAL_INO, 0xe0);
  b.set(p.hashSeed, 0xec);
  b.writeUInt8(1, 0xfc); // half_md4
  b.writeUInt8(1, 0xfd); // s_jnl_blocks holds a copy of the journal inode's blocks
  b.writeUInt16LE(DESC_SIZE, 0xfe);
  b.writeUInt32LE(MOUNT_USER_XATTR | MOUNT_ACL, 0x100);
  time32(b, 0x108, 0x276, p.epoch); // s_mkfs_time
  b.set(p.journalIBlock.subarray(0, 60), 0x10c);
  b.writeUInt32LE(hi(p.journalBytes), 0x10c + 60);
  b.writeUInt32LE(lo(p.journalBytes), 0x10c + 64);
  b.writeUInt32LE(hi(p.blocks), 0x150);
  b.writeUInt32LE(hi(p.reservedBlocks), 0x154);
  b.writeUInt32LE(hi(p.freeBlocks), 0x158);
  b.writeUInt16LE(EXTRA_ISIZE, 0x15c);
  b.writeUInt16LE(EXTRA_ISIZE, 0x15e);
  b.writeUInt32LE(FLAGS_SIGNED_HASH, 0x160);
  b.writeUInt8(LOG_GROUPS_PER_FLEX, 0x174);
  b.writeUInt8(1, 0x175); // crc32c
  b.writeUInt32LE(p.overheadBlocks, 0x248);
  b.writeUInt32LE(crc32c(0xffffffff, b, 0, 0x3fc), 0x3fc);
  return b;
}

export interface GroupDesc {
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
  flags: number;
  itableUnused: number;
  blockBitmapCsum: number;
  inodeBitmapCsum: number;
}

/** The descriptor table, padded to whole blocks, each descriptor checksummed with its group number. */
export function descriptorTable(descs: GroupDesc[], fsSeed: number, blocks: number): Buffer {
  const b = Buffer.alloc(blocks * BLOCK);
  const lo = (v: number): number => v % 2 ** 32;
  const hi = (v: number): number => Math.floor(v / 2 ** 32);
  descs.forEach((d, g) => {
    const o = g * DESC_SIZE;
    b.writeUInt32LE(lo(d.blockBitmap), o + 0x00);
    b.writeUInt32LE(lo(d.inodeBitmap), o + 0x04);
    b.writeUInt32LE(lo(d.inodeTable), o + 0x08);
    b.writeUInt16LE(d.freeBlocks & 0xffff, o + 0x0c);
    b.writeUInt16LE(d.freeInodes & 0xffff, o + 0x0e);
    b.writeUInt16LE(d.usedDirs & 0xffff, o + 0x10);
    b.writeUInt16LE(d.flags, o + 0x12);
    b.writeUInt16LE(d.blockBitmapCsum & 0xffff, o + 0x18);
    b.writeUInt16LE(d.inodeBitmapCsum & 0xffff, o + 0x1a);
    b.writeUInt16LE(d.itableUnused & 0xffff, o + 0x1c);
    b.writeUInt32LE(hi(d.blockBitmap), o + 0x20);
    b.writeUInt32LE(hi(d.inodeBitmap), o + 0x24);
    b.writeUInt32LE(hi(d.inodeTable), o + 0x28);
    b.writeUInt16LE(d.freeBlocks >>> 16, o + 0x2c);
    b.writeUInt16LE(d.freeInodes >>> 16, o + 0x2e);
    b.writeUInt16LE(d.usedDirs >>> 16, o + 0x30);
    b.writeUInt16LE(d.itableUnused >>> 16, o + 0x32);
    b.writeUInt16LE(d.blockBitmapCsum >>> 16, o + 0x38);
    b.writeUInt16LE(d.inodeBitmapCsum >>> 16, o + 0x3a);
    const c = crc32c(crc32cU32(fsSeed, g), b, o, o + DESC_SIZE);
    b.writeUInt16LE(c & 0xffff, o + 0x1e);
  });
  return b;
}
