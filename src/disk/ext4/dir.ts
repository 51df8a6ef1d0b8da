// Directory blocks: one linear block when the entries fit, else an htree (dx root, dx nodes, hash-ordered leaves), all checksummed.
import { Img2vmError } from '../../core/errors.js';
import { crc32c } from './crc32c.js';
import type { DirHasher } from './dirhash.js';
import { BLOCK } from './geometry.js';

export const FT_REG = 1;
export const FT_DIR = 2;
export const FT_CHR = 3;
export const FT_BLK = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_LNK = 7;

export interface DirEntry {
  /** The name as a latin1 binary string (one char per byte). */
  name: string;
  ino: number;
  type: number;
}

const TAIL = 12;
const LEAF_SPACE = BLOCK - TAIL;
/** dx entries in the root: after ".", "..", the 8-byte root info and room for the 8-byte dx tail. */
const ROOT_LIMIT = (BLOCK - 32 - 8) / 8;
const NODE_LIMIT = (BLOCK - 8 - 8) / 8;
const HASH_HALF_MD4 = 1;

export function recLen(nameLen: number): number {
  return (8 + nameLen + 3) & ~3;
}

/** Leaf boundaries for entry sizes packed in order: the index where each block starts. */
function pack(sizes: ArrayLike<number>, first: number): number[] {
  const starts = [0];
  let used = first;
  for (let i = 0; i < sizes.length; i++) {
    const s = sizes[i]!;
    if (used + s > LEAF_SPACE) {
      starts.push(i);
      used = 0;
    }
    used += s;
  }
  return starts;
}

/** Blocks a directory with these name lengths takes (hashes decide the htree leaf packing). */
export function dirBlocks(nameLens: number[], hashes: () => Uint32Array | undefined, minBlocks: number): number {
  const sizes = nameLens.map(recLen);
  const linear = pack(sizes, 24).length;
  if (linear === 1) return Math.max(1, minBlocks);
  return htreeShape(sortedSizes(sizes, hashes())).total;
}

function sortedSizes(sizes: number[], hashes: Uint32Array | undefined): number[] {
  if (!hashes) return sizes;
  const idx = sizes.map((_, i) => i).sort((a, b) => hashes[a]! - hashes[b]! || a - b);
  return idx.map((i) => sizes[i]!);
}

function htreeShape(sortedSizes: number[]): { leaves: number[]; nodes: number; total: number } {
  const leaves = pack(sortedSizes, 0);
  const nodes = leaves.length <= ROOT_LIMIT ? 0 : Math.ceil(leaves.length / NODE_LIMIT);
  if (nodes > ROOT_LIMIT) {
    throw new Img2vmError('badImage', `a directory with ${sortedSizes.length} entries is larger than an ext4 htree can index without large_dir`, 'the image content is hostile or needs splitting into several directories');
  }
  return { leaves, nodes, total: 1 + nodes + leaves.length };
}

function putEntry(b: Buffer, off: number, ino: number, rec: number, name: string, type: number): void {
  b.writeUInt32LE(ino, off);
  b.writeUInt16LE(rec, off + 4);
  b.writeUInt8(name.length, off + 6);
  b.writeUInt8(type, off + 7);
  b.write(name, off + 8, 'latin1');
}

function leafTail(b: Buffer, seed: number): void {
  b.writeUInt32LE(0, LEAF_SPACE);
  b.writeUInt16LE(TAIL, LEAF_SPACE + 4);
  b.writeUInt8(0, LEAF_SPACE + 6);
  b.writeUInt8(0xde, LEAF_SPACE + 7);
  b.writeUInt32LE(crc32c(seed, b, 0, LEAF_SPACE), LEAF_SPACE + 8);
}

/** Writes entries[from, to) into a fresh leaf block, the last entry's record reaching the tail. */
function leaf(entries: DirEntry[], from: number, to: number, seed: number, head?: DirEntry[]): Buffer {
  const b = Buffer.alloc(BLOCK);
  const all = head ? [...head, ...entries.slice(from, to)] : entries.slice(from, to);
  let off = 0;
  if (all.length === 0) {
    b.writeUInt16LE(LEAF_SPACE, 4);
  }
  for (let i = 0; i < all.length; i++) {
    const e = all[i]!;
    const rec = i === all.length - 1 ? LEAF_SPACE - off : recLen(e.name.length);
    putEntry(b, off, e.ino, rec, e.name, e.type);
    off += rec;
  }
  leafTail(b, seed);
  return b;
}

const DOT = '.';
const DOTDOT = '..';

function dxTail(b: Buffer, countOffset: number, count: number, limit: number, seed: number): void {
  const t = countOffset + limit * 8;
  b.writeUInt32LE(0, t);
  let c = crc32c(seed, b, 0, countOffset + count * 8);
  c = crc32c(c, b, t, t + 4);
  c = crc32c(c, Buffer.alloc(4));
  b.writeUInt32LE(c, t + 4);
}

/** dx entries (hash, logical block) starting at off: the first entry's hash slot holds limit and count. */
function dxEntries(b: Buffer, off: number, limit: number, list: Array<[number, number]>): void {
  b.writeUInt16LE(limit, off);
  b.writeUInt16LE(list.length, off + 2);
  for (let i = 0; i < list.length; i++) {
    const [hash, blk] = list[i]!;
    if (i > 0) b.writeUInt32LE(hash, off + 8 * i);
    b.writeUInt32LE(blk, off + 8 * i + 4);
  }
}

export interface DirContent {
  blocks: Buffer[];
  indexed: boolean;
}

/**
 * All blocks of a directory in logical order. self/parent become "." and ".."; children come in the
 * given order (linear) or hash order (htree). seed is the directory inode's checksum seed.
 */
export function buildDir(self: number, parent: number, children: DirEntry[], hasher: DirHasher, seed: number, minBlocks = 1): DirContent {
  const dots: DirEntry[] = [
    { name: DOT, ino: self, type: FT_DIR },
    { name: DOTDOT, ino: parent, type: FT_DIR },
  ];
  const sizes = children.map((e) => recLen(e.name.length));
  if (pack(sizes, 24).length === 1) {
    const blocks = [leaf(children, 0, children.length, seed, dots)];
    while (blocks.length < minBlocks) blocks.push(leaf([], 0, 0, seed));
    return { blocks, indexed: false };
  }
  const hashes = children.map((e) => hasher.hash(e.name));
  const order = children.map((_, i) => i).sort((a, b) => hashes[a]! - hashes[b]! || a - b);
  const sorted = order.map((i) => children[i]!);
  const sortedHash = order.map((i) => hashes[i]!);
  const shape = htreeShape(order.map((i) => sizes[i]!));
  const starts = shape.leaves;
  const firstLeaf = 1 + shape.nodes;
  // Index entries for the leaves: the first entry's hash, with the low bit set when it continues a run of equal hashes.
  const leafIndex: Array<[number, number]> = starts.map((s, j) => {
    const h = sortedHash[s]!;
    const cont = j > 0 && sortedHash[s - 1] === h;
    return [cont ? (h | 1) >>> 0 : h, firstLeaf + j];
  });
  const blocks: Buffer[] = [];
  const root = Buffer.alloc(BLOCK);
  putEntry(root, 0, self, 12, DOT, FT_DIR);
  putEntry(root, 12, parent, BLOCK - 12, DOTDOT, FT_DIR);
  root.writeUInt32LE(0, 24);
  root.writeUInt8(HASH_HALF_MD4, 28);
  root.writeUInt8(8, 29);
  root.writeUInt8(shape.nodes > 0 ? 1 : 0, 30);
  root.writeUInt8(0, 31);
  blocks.push(root);
  if (shape.nodes === 0) {
    dxEntries(root, 32, ROOT_LIMIT, leafIndex);
    dxTail(root, 32, leafIndex.length, ROOT_LIMIT, seed);
  } else {
    const rootList: Array<[number, number]> = [];
    for (let n = 0; n < shape.nodes; n++) {
      const part = leafIndex.slice(n * NODE_LIMIT, (n + 1) * NODE_LIMIT);
      const node = Buffer.alloc(BLOCK);
      node.writeUInt32LE(0, 0);
      node.writeUInt16LE(BLOCK, 4);
      dxEntries(node, 8, NODE_LIMIT, part);
      dxTail(node, 8, part.length, NODE_LIMIT, seed);
      blocks.push(node);
      rootList.push([part[0]![0], 1 + n]);
    }
    dxEntries(root, 32, ROOT_LIMIT, rootList);
    dxTail(root, 32, rootList.length, ROOT_LIMIT, seed);
  }
  for (let j = 0; j < starts.length; j++) blocks.push(leaf(sorted, starts[j]!, starts[j + 1] ?? sorted.length, seed));
  return { blocks, indexed: true };
}
