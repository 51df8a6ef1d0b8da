// How big a file system to make for some content: inodes, journal, the minimum and the default with headroom.
import { MiB, alignUp } from '../core/units.js';

export interface ContentStats {
  /** 4 KiB blocks that file data, symlinks and directories take. */
  blocks4k: number;
  /** Number of inodes the tree uses. */
  entries: number;
}

/** Spare inodes beyond half the tree's are not given: each costs 4 KiB of file system at least (see inodesFor). */
export const MAX_SPARE_INODES = 262144;

/**
 * Inodes to reserve: the tree's own plus room for the system to create files after boot (half as
 * many again, at most MAX_SPARE_INODES). An ext4 group holds at most 32768 inodes (one 4 KiB
 * bitmap) in 128 MiB, so every inode costs 4 KiB of file system whatever the content: with half
 * again as spare, a tree of 4 million empty files made a 23 GB file system.
 */
export function inodesFor(stats: ContentStats): number {
  const spare = Math.min(Math.ceil(stats.entries / 2), MAX_SPARE_INODES);
  return alignUp(Math.max(16384, stats.entries + spare + 8192), 1024);
}

export function journalMiBFor(fsBytes: number): number {
  return fsBytes >= 2048 * MiB ? 64 : fsBytes >= 512 * MiB ? 32 : 16;
}

/**
 * The smallest file system that holds the content: data + inode tables + journal + group metadata
 * (bitmaps, descriptors, reserved GDT ~ 3%) + the 1% reserved for root.
 */
export function minimumFsSize(stats: ContentStats): number {
  const data = stats.blocks4k * 4096;
  const inodeTables = inodesFor(stats) * 256;
  const guess = data + inodeTables;
  const journal = journalMiBFor(guess * 1.1) * MiB;
  return alignUp(Math.ceil((guess + journal) * 1.06) + 16 * MiB, MiB);
}

/** Default headroom above the minimum: 256 MiB plus 15% of the content, so the guest can log and install a little. */
export function defaultFsSize(stats: ContentStats): number {
  const min = minimumFsSize(stats);
  return alignUp(min + 256 * MiB + Math.ceil(stats.blocks4k * 4096 * 0.15), MiB);
}

/** Room the content gets beyond what was measured: files the guest makes on its first boot, a few new inodes. */
export const SLACK: ContentStats = { blocks4k: 4096, entries: 1000 };

/** The content with the slack every size is computed from (the plan's file systems, the writer's inode count). */
export function withSlack(c: ContentStats): ContentStats {
  return { blocks4k: c.blocks4k + SLACK.blocks4k, entries: c.entries + SLACK.entries };
}
