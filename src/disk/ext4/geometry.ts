// The fixed geometry of the file systems the writer makes, and where backup superblocks sit whatever the final size.

// Data is written before the final size is known, so nothing may depend on it: 4 KiB blocks,
// 32768 blocks per group, and with sparse_super the groups that carry a backup superblock (0, 1
// and the powers of 3, 5 and 7) depend only on the group number. Every such group starts with a
// region of 1 + GDT_SPAN blocks (superblock, descriptor table, reserved descriptor blocks) that no
// data ever lands in. GDT_SPAN is the descriptor table plus its reserve, constant, so the reserve
// is whatever the table does not use: room to grow to MAX_GROUPS groups with resize2fs.

export const BLOCK = 4096;
export const BLOCKS_PER_GROUP = 32768;
export const INODE_SIZE = 256;
export const EXTRA_ISIZE = 32;
export const DESC_SIZE = 64;
export const DESCS_PER_BLOCK = BLOCK / DESC_SIZE;
export const INODES_PER_BLOCK = BLOCK / INODE_SIZE;
/** Descriptor blocks plus reserved descriptor blocks in every backup group. */
export const GDT_SPAN = 256;
/** The superblock and the descriptor span at the start of every backup group. */
export const BACKUP_REGION = 1 + GDT_SPAN;
/** One reserved descriptor block must remain (an empty reserve would need a different resize inode). */
export const MAX_GROUPS = (GDT_SPAN - 1) * DESCS_PER_BLOCK;
export const MAX_BLOCKS = MAX_GROUPS * BLOCKS_PER_GROUP;
/** The inode bitmap is one block. */
export const MAX_INODES_PER_GROUP = BLOCK * 8;
export const FIRST_INO = 11;
export const ROOT_INO = 2;
export const RESIZE_INO = 7;
export const JOURNAL_INO = 8;
export const LOST_FOUND_INO = 11;
/** Longest initialized extent. */
export const MAX_EXTENT_LEN = 32768;
/** Blocks of a file addressable with 32-bit logical block numbers. */
export const MAX_FILE_BLOCKS = 2 ** 32 - 1;

function isPower(n: number, base: number): boolean {
  while (n > 1 && n % base === 0) n /= base;
  return n === 1;
}

/** Whether group g holds a superblock (primary in 0, backups in 1 and powers of 3, 5, 7). */
export function isBackupGroup(g: number): boolean {
  return g <= 1 || (g % 2 === 1 && (isPower(g, 3) || isPower(g, 5) || isPower(g, 7)));
}

/** Backup groups other than 0 below `groups`, ascending (the order resize2fs and e2fsck list them in). */
export function backupGroups(groups: number): number[] {
  const out: number[] = [];
  for (const base of [3, 5, 7]) for (let g = base; g < groups; g *= base) out.push(g);
  if (groups > 1) out.push(1);
  return [...new Set(out)].sort((a, b) => a - b);
}

/** If block b lies in a backup region, the first block after that region; else b. */
export function skipReserved(b: number): number {
  const g = Math.floor(b / BLOCKS_PER_GROUP);
  const off = b - g * BLOCKS_PER_GROUP;
  return off < BACKUP_REGION && isBackupGroup(g) ? g * BLOCKS_PER_GROUP + BACKUP_REGION : b;
}

/** Backup groups up to the largest file system, ascending. */
const BACKUPS: readonly number[] = [0, ...backupGroups(MAX_GROUPS + 1)];

/** The start of the next backup region at or after block b (b itself if one starts there). */
export function nextReservedStart(b: number): number {
  const g = Math.ceil(b / BLOCKS_PER_GROUP);
  for (const x of BACKUPS) if (x >= g) return x * BLOCKS_PER_GROUP;
  return Number.MAX_SAFE_INTEGER;
}

/**
 * The fresh block position after taking n single blocks from position pos, skipping backup
 * regions (pos is never inside one).
 */
export function advance(pos: number, n: number): number {
  let p = skipReserved(pos);
  while (n > 0) {
    const stop = nextReservedStart(p + 1);
    const room = stop - p;
    if (n < room) return p + n;
    n -= room;
    p = stop + BACKUP_REGION;
  }
  return p;
}

/** Where a contiguous run of n blocks starts at or after pos without crossing a backup region. */
export function placeRun(pos: number, n: number): number {
  let p = skipReserved(pos);
  for (;;) {
    const stop = nextReservedStart(p + 1);
    if (p + n <= stop) return p;
    if (n > BLOCKS_PER_GROUP - BACKUP_REGION)
      throw new Error(`a contiguous run of ${n} blocks cannot avoid the backup regions`);
    p = stop + BACKUP_REGION;
  }
}

export function groupsFor(blocks: number): number {
  return Math.ceil(blocks / BLOCKS_PER_GROUP);
}

/** Inodes per group for at least `inodes` inodes in `groups` groups: whole inode-table blocks, as mke2fs rounds. */
export function inodesPerGroupFor(inodes: number, groups: number): number {
  const ipg = Math.ceil(inodes / groups);
  return Math.max(INODES_PER_BLOCK, Math.ceil(ipg / INODES_PER_BLOCK) * INODES_PER_BLOCK);
}

/**
 * Mke2fs's rule: a last group too small for its own overhead plus 50 blocks is dropped. Bitmaps
 * and inode tables live elsewhere (flex_bg), so the overhead is the backup region if it has one.
 */
export function trimBlocks(blocks: number): number {
  const groups = groupsFor(blocks);
  const rem = blocks % BLOCKS_PER_GROUP;
  if (rem === 0 || groups === 1) return blocks;
  const overhead = isBackupGroup(groups - 1) ? BACKUP_REGION : 0;
  return rem < overhead + 50 ? blocks - rem : blocks;
}
