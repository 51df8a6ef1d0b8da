// Where the metadata written at finish goes (after the data), and the smallest size that holds everything: one rule for both.
import { Img2vmError } from '../../core/errors.js';
import { formatSize } from '../../core/units.js';
import type { Allocator } from './alloc.js';
import {
  BACKUP_REGION,
  BLOCK,
  BLOCKS_PER_GROUP,
  INODE_SIZE,
  MAX_BLOCKS,
  MAX_GROUPS,
  MAX_INODES_PER_GROUP,
  advance,
  groupsFor,
  inodesPerGroupFor,
  isBackupGroup,
  nextReservedStart,
  placeRun,
  skipReserved,
  trimBlocks,
} from './geometry.js';
import { defaultJournalBlocks, journalFallbacks, MIN_JOURNAL_BLOCKS } from './journal.js';

/** The largest contiguous journal piece (a 64 MiB journal is one extent). */
const JOURNAL_PIECE = 16384;
/** Four pieces: the journal's extents stay in its inode. */
export const MAX_JOURNAL_BLOCKS = 4 * JOURNAL_PIECE;

export interface Geometry {
  blocks: number;
  groups: number;
  inodesPerGroup: number;
  inodeTableBlocks: number;
}

export function geometryFor(blocks: number, inodeCount: number): Geometry | undefined {
  const groups = groupsFor(blocks);
  const ipg = inodesPerGroupFor(inodeCount, groups);
  if (ipg > MAX_INODES_PER_GROUP || ipg * groups > 2 ** 32 - 1) return undefined;
  return { blocks, groups, inodesPerGroup: ipg, inodeTableBlocks: (ipg * INODE_SIZE) / BLOCK };
}

export interface FixedPlacement {
  blockBitmaps: number[];
  inodeBitmaps: number[];
  inodeTables: number[];
  /** Journal extents as (physical start, length) pairs. */
  journal: Array<[number, number]>;
}

function journalPieces(blocks: number): number[] {
  const out: number[] = [];
  for (let left = blocks; left > 0; left -= JOURNAL_PIECE) out.push(Math.min(JOURNAL_PIECE, left));
  return out;
}

/** Takes the bitmaps, inode tables and journal from fresh space at the allocator's cursor. */
export function placeFixed(alloc: Allocator, g: Geometry, journalBlocks: number): FixedPlacement {
  const blockBitmaps: number[] = [];
  const inodeBitmaps: number[] = [];
  const inodeTables: number[] = [];
  for (let i = 0; i < g.groups; i++) blockBitmaps.push(alloc.fresh());
  for (let i = 0; i < g.groups; i++) inodeBitmaps.push(alloc.fresh());
  for (let i = 0; i < g.groups; i++) inodeTables.push(alloc.freshRun(g.inodeTableBlocks));
  const journal: Array<[number, number]> = journalPieces(journalBlocks).map((n) => [alloc.freshRun(n), n]);
  return { blockBitmaps, inodeBitmaps, inodeTables, journal };
}

/** The journal's extents as flat (logical, physical, length) triples. */
export function journalExtents(f: FixedPlacement): number[] {
  const ext: number[] = [];
  let l = 0;
  for (const [start, n] of f.journal) {
    ext.push(l, start, n);
    l += n;
  }
  return ext;
}

/** The same placement as arithmetic: the cursor after it and the gap blocks it leaves free. */
function simulateFixed(cursor: number, g: Geometry, journalBlocks: number): { cursor: number; gaps: number } {
  let pos = advance(cursor, 2 * g.groups);
  let gaps = 0;
  const run = (n: number): void => {
    const from = skipReserved(pos);
    const at = placeRun(pos, n);
    if (at > from) gaps += nextReservedStart(from + 1) - from;
    pos = at + n;
  };
  for (let i = 0; i < g.groups; i++) run(g.inodeTableBlocks);
  for (const n of journalPieces(journalBlocks)) run(n);
  return { cursor: pos, gaps };
}

export interface Demand {
  /** The data cursor (first never-used block). */
  cursor: number;
  /** Freed blocks below the cursor that later allocations reuse. */
  free: number;
  /** Blocks still to allocate after the fixed metadata: copies, directories, trees, xattrs, symlinks. */
  variable: number;
  /** Inodes the tree uses (the highest inode number). */
  usedInodes: number;
}

/** The block after the last one the layout uses, for a file system of g's geometry. */
export function layoutEnd(d: Demand, g: Geometry, journalBlocks: number): number {
  const f = simulateFixed(d.cursor, g, journalBlocks);
  const fromFresh = Math.max(0, d.variable - d.free - f.gaps);
  return fromFresh > 0 ? advance(f.cursor, fromFresh) : skipReserved(f.cursor);
}

/** Blocks needed so that the last group is not dropped by the last-group rule (see trimBlocks). */
function keepLastGroup(end: number): number {
  const groups = groupsFor(end);
  if (groups <= 1) return Math.max(end, BACKUP_REGION + 50);
  const start = (groups - 1) * BLOCKS_PER_GROUP;
  const minRem = (isBackupGroup(groups - 1) ? BACKUP_REGION : 0) + 50;
  return Math.max(end, start + minRem);
}

function tooLarge(what: string): Img2vmError {
  return new Img2vmError(
    'usage',
    `${what} is larger than the ext4 writer supports (${formatSize(MAX_BLOCKS * BLOCK)}, ${MAX_GROUPS} block groups)`,
    'use a smaller --size, or fewer inodes',
  );
}

/** The smallest file-system size in blocks for the demand with inodeCount inodes and the given (or default) journal. */
export function minimumBlocks(d: Demand, inodeCount: number, journalBlocks?: number): number {
  let jb = journalBlocks ?? defaultJournalBlocks(0);
  for (;;) {
    let groups = Math.max(1, groupsFor(d.cursor));
    let found: number | undefined;
    for (; groups <= MAX_GROUPS; groups++) {
      const g = geometryFor(groups * BLOCKS_PER_GROUP, Math.max(inodeCount, d.usedInodes));
      if (!g) continue;
      const end = layoutEnd(d, g, jb);
      if (end > groups * BLOCKS_PER_GROUP) continue;
      found = keepLastGroup(Math.max(end, (groups - 1) * BLOCKS_PER_GROUP + 1));
      break;
    }
    if (found === undefined) throw tooLarge('the content');
    if (journalBlocks !== undefined) return found;
    const want = defaultJournalBlocks(found * BLOCK);
    if (want <= jb) return found;
    jb = want;
  }
}

/** The journal for a file system: given, else the default size or the largest fallback that fits. */
export function chooseJournal(d: Demand, g: Geometry, journalBlocks: number | undefined): number | undefined {
  if (journalBlocks !== undefined) {
    if (!Number.isInteger(journalBlocks) || journalBlocks < MIN_JOURNAL_BLOCKS || journalBlocks > MAX_JOURNAL_BLOCKS) {
      throw new Img2vmError(
        'usage',
        `a journal of ${journalBlocks} blocks is outside the ${MIN_JOURNAL_BLOCKS} to ${MAX_JOURNAL_BLOCKS} the writer makes`,
        'give a journal of 4 to 256 MiB',
      );
    }
    return layoutEnd(d, g, journalBlocks) <= g.blocks ? journalBlocks : undefined;
  }
  for (const jb of journalFallbacks(defaultJournalBlocks(g.blocks * BLOCK)))
    if (layoutEnd(d, g, jb) <= g.blocks) return jb;
  return undefined;
}

/**
 * What a file system made with `sizeBytes` and at least `inodeCount` inodes really is: the writer drops a last group
 * too small to be worth it and rounds the inodes up to whole inode-table blocks per group, as mke2fs does. Planning
 * states these, so the plan says what the superblock will.
 */
export function ext4Shape(sizeBytes: number, inodeCount: number): { bytes: number; inodes: number } {
  const blocks = trimBlocks(Math.floor(sizeBytes / BLOCK));
  const g = geometryFor(blocks, inodeCount);
  return { bytes: blocks * BLOCK, inodes: g ? g.inodesPerGroup * g.groups : inodeCount };
}
