// Extent trees: up to 4 extents in the inode, else leaf and index blocks (each with its checksum tail) under an in-inode root.
import { crc32c } from '../../core/crc32c.js';
import { BLOCK } from './geometry.js';

const MAGIC = 0xf30a;
const ROOT_MAX = 4;
/** Entries per tree block: (4096 - 12-byte header - 4-byte tail) / 12. */
export const NODE_MAX = Math.floor((BLOCK - 12 - 4) / 12);

/** Tree blocks needed for n extents (0 when they fit in the inode). */
export function treeBlocksFor(n: number): number {
  let total = 0;
  while (n > ROOT_MAX) {
    n = Math.ceil(n / NODE_MAX);
    total += n;
  }
  return total;
}

function header(buf: Buffer, off: number, entries: number, max: number, depth: number): void {
  buf.writeUInt16LE(MAGIC, off);
  buf.writeUInt16LE(entries, off + 2);
  buf.writeUInt16LE(max, off + 4);
  buf.writeUInt16LE(depth, off + 6);
  buf.writeUInt32LE(0, off + 8);
}

function leafEntry(buf: Buffer, off: number, l: number, p: number, n: number): void {
  buf.writeUInt32LE(l, off);
  buf.writeUInt16LE(n, off + 4);
  buf.writeUInt16LE(Math.floor(p / 2 ** 32), off + 6);
  buf.writeUInt32LE(p % 2 ** 32, off + 8);
}

function indexEntry(buf: Buffer, off: number, l: number, child: number): void {
  buf.writeUInt32LE(l, off);
  buf.writeUInt32LE(child % 2 ** 32, off + 4);
  buf.writeUInt16LE(Math.floor(child / 2 ** 32), off + 8);
  buf.writeUInt16LE(0, off + 10);
}

export interface ExtentTree {
  /** The 60-byte i_block. */
  root: Buffer;
  /** Tree blocks to write: block number and contents (checksummed). */
  blocks: Array<{ block: number; data: Buffer }>;
}

/**
 * Writes the in-inode root of up to 4 extents at off of buf (an i_block of zeros), the case of
 * nearly every file, without a buffer of its own; false when the extents need tree blocks.
 */
export function extentRootInPlace(ext: readonly number[], buf: Buffer, off: number): boolean {
  const n = ext.length / 3;
  if (n > ROOT_MAX) return false;
  header(buf, off, n, ROOT_MAX, 0);
  for (let i = 0; i < n; i++) leafEntry(buf, off + 12 + 12 * i, ext[3 * i]!, ext[3 * i + 1]!, ext[3 * i + 2]!);
  return true;
}

/**
 * Builds the tree for extents given as flat (logical, physical, length) triples, sorted by logical
 * block. Tree blocks come from alloc in creation order (leaves first), checksummed with the
 * inode's seed.
 */
export function buildExtentTree(ext: readonly number[], alloc: () => number, seed: number): ExtentTree {
  const root = Buffer.alloc(60);
  const n = ext.length / 3;
  if (extentRootInPlace(ext, root, 0)) return { root, blocks: [] };
  const blocks: Array<{ block: number; data: Buffer }> = [];
  // Each level is a list of (first logical block, block number) of its nodes.
  let level: Array<[number, number]> = [];
  for (let i = 0; i < n; i += NODE_MAX) {
    const cnt = Math.min(NODE_MAX, n - i);
    const data = Buffer.alloc(BLOCK);
    header(data, 0, cnt, NODE_MAX, 0);
    for (let j = 0; j < cnt; j++) {
      const k = 3 * (i + j);
      leafEntry(data, 12 + 12 * j, ext[k]!, ext[k + 1]!, ext[k + 2]!);
    }
    const block = alloc();
    blocks.push({ block, data });
    level.push([ext[3 * i]!, block]);
  }
  let depth = 1;
  while (level.length > ROOT_MAX) {
    const up: Array<[number, number]> = [];
    for (let i = 0; i < level.length; i += NODE_MAX) {
      const cnt = Math.min(NODE_MAX, level.length - i);
      const data = Buffer.alloc(BLOCK);
      header(data, 0, cnt, NODE_MAX, depth);
      for (let j = 0; j < cnt; j++) indexEntry(data, 12 + 12 * j, level[i + j]![0], level[i + j]![1]);
      const block = alloc();
      blocks.push({ block, data });
      up.push([level[i]![0], block]);
    }
    level = up;
    depth++;
  }
  header(root, 0, level.length, ROOT_MAX, depth);
  for (let j = 0; j < level.length; j++) indexEntry(root, 12 + 12 * j, level[j]![0], level[j]![1]);
  const tail = 12 + 12 * NODE_MAX;
  for (const b of blocks) b.data.writeUInt32LE(crc32c(seed, b.data, 0, tail), tail);
  return { root, blocks };
}
