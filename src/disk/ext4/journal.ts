// The jbd2 journal: its size rule and its v2 superblock (big-endian, 64-bit block tags, checksum v3), the rest of the journal zeros.
import { crc32c } from '../../core/crc32c.js';
import { BLOCK } from './geometry.js';

const MiB = 1024 * 1024;
const JBD2_MAGIC = 0xc03b3998;
const SUPERBLOCK_V2 = 4;
const INCOMPAT_64BIT = 0x2;
const INCOMPAT_CSUM_V3 = 0x10;
const CRC32C_CHKSUM = 4;
/** jbd2's own minimum. */
export const MIN_JOURNAL_BLOCKS = 1024;

/** The journal size img2vm has always used (as src/disk/ext4.ts journalMiBFor): 16, 32 or 64 MiB by file-system size. */
export function defaultJournalBlocks(fsBytes: number): number {
  const mib = fsBytes >= 2048 * MiB ? 64 : fsBytes >= 512 * MiB ? 32 : 16;
  return (mib * MiB) / BLOCK;
}

/** Smaller journal sizes to fall back to when the default does not fit the file system. */
export function journalFallbacks(blocks: number): number[] {
  return [blocks, ...[(32 * MiB) / BLOCK, (16 * MiB) / BLOCK].filter((b) => b < blocks)];
}

/**
 * The journal superblock, as the kernel leaves it after mounting a 64bit metadata_csum file
 * system: empty (s_start 0, nothing to replay), sequence 1, the file system's UUID.
 */
export function journalSuperblock(blocks: number, uuid: Uint8Array): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.writeUInt32BE(JBD2_MAGIC, 0);
  b.writeUInt32BE(SUPERBLOCK_V2, 4);
  b.writeUInt32BE(0, 8);
  b.writeUInt32BE(BLOCK, 0x0c);
  b.writeUInt32BE(blocks, 0x10);
  b.writeUInt32BE(1, 0x14); // s_first
  b.writeUInt32BE(1, 0x18); // s_sequence
  b.writeUInt32BE(0, 0x1c); // s_start: clean
  b.writeUInt32BE(0, 0x24); // compat
  b.writeUInt32BE(INCOMPAT_64BIT | INCOMPAT_CSUM_V3, 0x28);
  b.writeUInt32BE(0, 0x2c); // ro_compat
  b.set(uuid, 0x30);
  b.writeUInt32BE(1, 0x40); // s_nr_users
  b.writeUInt8(CRC32C_CHKSUM, 0x50);
  b.writeUInt32BE(crc32c(0xffffffff, b, 0, 1024), 0xfc);
  return b;
}
