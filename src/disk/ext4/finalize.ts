// The last writes of finish: bitmaps, descriptors, the resize inode's blocks, the journal superblock and every superblock copy.
import type { Allocator } from './alloc.js';
import type { BatchWriter } from './batch.js';
import { crc32c } from '../../core/crc32c.js';
import { BACKUP_REGION, BLOCK, BLOCKS_PER_GROUP, DESCS_PER_BLOCK, backupGroups, isBackupGroup } from './geometry.js';
import { journalSuperblock } from './journal.js';
import type { FixedPlacement, Geometry } from './layout.js';
import {
  BG_BLOCK_UNINIT,
  BG_INODE_UNINIT,
  BG_INODE_ZEROED,
  descriptorTable,
  superblock,
  type GroupDesc,
  type SuperParams,
} from './super.js';

function setBits(b: Buffer, from: number, to: number): void {
  while (from < to && from & 7) b[from >> 3]! |= 1 << (from++ & 7);
  const fullEnd = to & ~7;
  if (from < fullEnd) {
    b.fill(0xff, from >> 3, fullEnd >> 3);
    from = fullEnd;
  }
  while (from < to) b[from >> 3]! |= 1 << (from++ & 7);
}

function clearBits(b: Buffer, from: number, to: number): void {
  for (let i = from; i < to; i++) b[i >> 3]! &= ~(1 << (i & 7));
}

export interface FinalizeInput {
  geo: Geometry;
  fixed: FixedPlacement;
  alloc: Allocator;
  batch: BatchWriter;
  fsSeed: number;
  lastIno: number;
  usedDirs: number[];
  reservedGdtBlocks: number;
  resizeDind: number;
  journalBlocks: number;
  journalIBlock: Uint8Array;
  uuid: Uint8Array;
  label: Uint8Array;
  hashSeed: Uint8Array;
  epoch: number;
}

export interface FinalCounts {
  freeBlocks: number;
  freeInodes: number;
  inodes: number;
}

/** Bitmaps and descriptors for every group from the allocator's final state. */
function groupTables(f: FinalizeInput): { descs: GroupDesc[]; freeBlocks: number } {
  const { geo, fixed, alloc, batch } = f;
  const ipg = geo.inodesPerGroup;
  const cursor = alloc.cursor;
  const runs = alloc.freeRuns();
  let ri = 0;
  const descs: GroupDesc[] = [];
  let freeTotal = 0;
  for (let g = 0; g < geo.groups; g++) {
    const gs = g * BLOCKS_PER_GROUP;
    const ge = Math.min(gs + BLOCKS_PER_GROUP, geo.blocks);
    const bb = Buffer.alloc(BLOCK);
    let used = 0;
    const usedEnd = Math.min(ge, cursor);
    if (usedEnd > gs) {
      setBits(bb, 0, usedEnd - gs);
      used += usedEnd - gs;
    }
    while (ri < runs.length && runs[ri]![0] + runs[ri]![1] <= gs) ri++;
    for (let j = ri; j < runs.length && runs[j]![0] < ge; j++) {
      const from = Math.max(gs, runs[j]![0]);
      const to = Math.min(ge, runs[j]![0] + runs[j]![1]);
      clearBits(bb, from - gs, to - gs);
      used -= to - from;
    }
    if (gs >= cursor && isBackupGroup(g)) {
      setBits(bb, 0, BACKUP_REGION);
      used += BACKUP_REGION;
    }
    const free = ge - gs - used;
    freeTotal += free;
    if (ge - gs < BLOCKS_PER_GROUP) setBits(bb, ge - gs, BLOCKS_PER_GROUP);
    const inodesUsed = Math.max(0, Math.min(ipg, f.lastIno - g * ipg));
    let flags = BG_INODE_ZEROED;
    if (free === BLOCKS_PER_GROUP && g !== geo.groups - 1) flags |= BG_BLOCK_UNINIT;
    else batch.block(fixed.blockBitmaps[g]!, bb);
    let ibCsum = 0;
    if (inodesUsed === 0) {
      flags |= BG_INODE_UNINIT;
    } else {
      const ib = Buffer.alloc(BLOCK);
      setBits(ib, 0, inodesUsed);
      setBits(ib, ipg, BLOCK * 8);
      ibCsum = crc32c(f.fsSeed, ib, 0, ipg / 8);
      batch.block(fixed.inodeBitmaps[g]!, ib);
    }
    descs.push({
      blockBitmap: fixed.blockBitmaps[g]!,
      inodeBitmap: fixed.inodeBitmaps[g]!,
      inodeTable: fixed.inodeTables[g]!,
      freeBlocks: free,
      freeInodes: ipg - inodesUsed,
      usedDirs: f.usedDirs[g] ?? 0,
      flags,
      itableUnused: ipg - inodesUsed,
      blockBitmapCsum: crc32c(f.fsSeed, bb, 0, BLOCKS_PER_GROUP / 8),
      inodeBitmapCsum: ibCsum,
    });
  }
  return { descs, freeBlocks: freeTotal };
}

/**
 * The resize inode's blocks: its double-indirect block lists the primary reserved descriptor blocks,
 * and each of those lists its copies in the backup groups (what resize2fs and e2fsck expect).
 */
function writeResizeBlocks(f: FinalizeInput, gdtBlocks: number): void {
  const apb = BLOCK / 4;
  const backups = backupGroups(f.geo.groups);
  const dind = Buffer.alloc(BLOCK);
  for (let r = 0; r < f.reservedGdtBlocks; r++) {
    const primary = 1 + gdtBlocks + r;
    dind.writeUInt32LE(primary, ((gdtBlocks + r) % apb) * 4);
    const ind = Buffer.alloc(BLOCK);
    backups.forEach((g, i) => ind.writeUInt32LE(primary + g * BLOCKS_PER_GROUP, i * 4));
    f.batch.block(primary, ind);
  }
  f.batch.block(f.resizeDind, dind);
}

/** Writes everything that summarises the file system and returns its counts. */
export function finalize(f: FinalizeInput): FinalCounts {
  const { geo } = f;
  const { descs, freeBlocks } = groupTables(f);
  const gdtBlocks = Math.ceil(geo.groups / DESCS_PER_BLOCK);
  const gdt = descriptorTable(descs, f.fsSeed, gdtBlocks);
  writeResizeBlocks(f, gdtBlocks);
  f.batch.block(f.fixed.journal[0]![0], journalSuperblock(f.journalBlocks, f.uuid));
  const inodes = geo.inodesPerGroup * geo.groups;
  const backups = backupGroups(geo.groups);
  const overhead =
    (1 + backups.length) * BACKUP_REGION + 2 * geo.groups + geo.groups * geo.inodeTableBlocks + f.journalBlocks;
  const params: SuperParams = {
    blocks: geo.blocks,
    inodes,
    inodesPerGroup: geo.inodesPerGroup,
    reservedBlocks: Math.floor(geo.blocks / 100),
    freeBlocks,
    freeInodes: inodes - f.lastIno,
    reservedGdtBlocks: f.reservedGdtBlocks,
    uuid: f.uuid,
    label: f.label,
    hashSeed: f.hashSeed,
    epoch: f.epoch,
    journalIBlock: f.journalIBlock,
    journalBytes: f.journalBlocks * BLOCK,
    overheadBlocks: overhead,
  };
  const block0 = Buffer.alloc(BLOCK - 1024);
  superblock(params, 0).copy(block0, 0);
  f.batch.direct(block0, 1024);
  f.batch.blocksAt(1, gdt);
  for (const g of backups) {
    const sb = Buffer.alloc(BLOCK);
    superblock(params, g).copy(sb, 0);
    f.batch.block(g * BLOCKS_PER_GROUP, sb);
    f.batch.blocksAt(g * BLOCKS_PER_GROUP + 1, gdt);
  }
  f.batch.flush();
  return { freeBlocks, freeInodes: inodes - f.lastIno, inodes };
}
