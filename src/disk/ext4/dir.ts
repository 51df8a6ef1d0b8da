// Directory blocks: one linear block when the entries fit, else an htree (dx root, dx nodes, hash-ordered leaves), all checksummed.
import { Img2vmError } from '../../core/errors.js';
import type { Node } from '../../rootfs/tree.js';
import { crc32c } from '../../core/crc32c.js';
import type { DirHasher } from './dirhash.js';
import { BLOCK } from './geometry.js';

export const FT_REG = 1;
export const FT_DIR = 2;
export const FT_CHR = 3;
export const FT_BLK = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_LNK = 7;

/** The directory entry's file type of each kind of node. */
export const FILE_TYPE: Record<Node['kind'], number> = {
  file: FT_REG,
  dir: FT_DIR,
  char: FT_CHR,
  block: FT_BLK,
  fifo: FT_FIFO,
  socket: FT_SOCK,
  symlink: FT_LNK,
};

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

/** One directory's children as the inode pass lists them: parallel arrays, no object per entry. */
export interface DirListing {
  /** Names as latin1 binary strings, in the order a linear directory lists them. */
  names: readonly string[];
  inos: ArrayLike<number>;
  types: ArrayLike<number>;
}

/** True when "." and ".." and every name fit one leaf: the directory stays linear. */
function fitsOneBlock(names: readonly string[]): boolean {
  let used = 24;
  for (let i = 0; i < names.length; i++) {
    used += recLen(names[i]!.length);
    if (used > LEAF_SPACE) return false;
  }
  return true;
}

/** Entry positions sorted by (hash, position): the order of an htree's leaves. */
function hashOrder(hashes: Uint32Array): Uint32Array {
  const n = hashes.length;
  const order = new Uint32Array(n);
  if (n < POS) {
    // Hash and position packed into one exact double sort without a comparator call per pair.
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = hashes[i]! * POS + i;
    keys.sort();
    for (let i = 0; i < n; i++) order[i] = keys[i]! % POS;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  return order.sort((a, b) => hashes[a]! - hashes[b]! || a - b);
}
/** Positions below this pack with a 32-bit hash into 53 bits. */
const POS = 2 ** 21;

function hashesOf(names: readonly string[], hasher: DirHasher): Uint32Array {
  const h = new Uint32Array(names.length);
  for (let i = 0; i < names.length; i++) h[i] = hasher.hash(names[i]!);
  return h;
}

interface HtreeShape {
  /** The position in hash order where each leaf starts. */
  starts: number[];
  nodes: number;
  total: number;
}

function htreeShape(names: readonly string[], order: Uint32Array): HtreeShape {
  const starts = [0];
  let used = 0;
  for (let k = 0; k < order.length; k++) {
    const s = recLen(names[order[k]!]!.length);
    if (used + s > LEAF_SPACE) {
      starts.push(k);
      used = 0;
    }
    used += s;
  }
  const nodes = starts.length <= ROOT_LIMIT ? 0 : Math.ceil(starts.length / NODE_LIMIT);
  if (nodes > ROOT_LIMIT) {
    throw new Img2vmError(
      'badImage',
      `a directory with ${order.length} entries is larger than an ext4 htree can index without large_dir`,
      'the image content is hostile or needs splitting into several directories',
    );
  }
  return { starts, nodes, total: 1 + nodes + starts.length };
}

/** Blocks a directory with these names takes (hashes decide the htree leaf packing). */
export function dirBlocks(names: readonly string[], hasher: DirHasher, minBlocks: number): number {
  if (fitsOneBlock(names)) return Math.max(1, minBlocks);
  return htreeShape(names, hashOrder(hashesOf(names, hasher))).total;
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

const DOT = '.';
const DOTDOT = '..';
const ZERO4 = Buffer.alloc(4);

function dxTail(b: Buffer, countOffset: number, count: number, limit: number, seed: number): void {
  const t = countOffset + limit * 8;
  b.writeUInt32LE(0, t);
  let c = crc32c(seed, b, 0, countOffset + count * 8);
  c = crc32c(c, b, t, t + 4);
  c = crc32c(c, ZERO4);
  b.writeUInt32LE(c, t + 4);
}

/** dx entries (hash, logical block) for [from, to) of the lists, at off: the first entry's hash slot holds limit and count. */
function dxEntries(
  b: Buffer,
  off: number,
  limit: number,
  hashes: number[],
  blocks: number[],
  from: number,
  to: number,
): void {
  b.writeUInt16LE(limit, off);
  b.writeUInt16LE(to - from, off + 2);
  for (let i = from; i < to; i++) {
    const at = off + 8 * (i - from);
    if (i > from) b.writeUInt32LE(hashes[i]!, at);
    b.writeUInt32LE(blocks[i]!, at + 4);
  }
}

export interface DirContent {
  blocks: Buffer[];
  indexed: boolean;
}

/**
 * A directory's blocks in logical order, each handed to emit in one block-sized buffer that is
 * used again for the next (emit copies it out). self/parent become "." and ".."; children come in
 * the listed order (linear) or hash order (htree). seed is the directory inode's checksum seed.
 */
export function writeDir(
  self: number,
  parent: number,
  list: DirListing,
  hasher: DirHasher,
  seed: number,
  minBlocks: number,
  emit: (block: Buffer) => void,
): { blocks: number; indexed: boolean } {
  const { names, inos, types } = list;
  const b = SCRATCH;
  if (fitsOneBlock(names)) {
    b.fill(0);
    putEntry(b, 0, self, 12, DOT, FT_DIR);
    if (names.length === 0) putEntry(b, 12, parent, LEAF_SPACE - 12, DOTDOT, FT_DIR);
    else {
      putEntry(b, 12, parent, 12, DOTDOT, FT_DIR);
      let off = 24;
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        const rec = i === names.length - 1 ? LEAF_SPACE - off : recLen(name.length);
        putEntry(b, off, inos[i]!, rec, name, types[i]!);
        off += rec;
      }
    }
    leafTail(b, seed);
    emit(b);
    let blocks = 1;
    for (; blocks < minBlocks; blocks++) {
      b.fill(0);
      b.writeUInt16LE(LEAF_SPACE, 4);
      leafTail(b, seed);
      emit(b);
    }
    return { blocks, indexed: false };
  }
  const hashes = hashesOf(names, hasher);
  const order = hashOrder(hashes);
  const shape = htreeShape(names, order);
  const { starts } = shape;
  const firstLeaf = 1 + shape.nodes;
  // Index entries for the leaves: the first entry's hash, with the low bit set when it continues a run of equal hashes.
  const leafHash: number[] = [];
  const leafBlock: number[] = [];
  for (let j = 0; j < starts.length; j++) {
    const s = starts[j]!;
    const h = hashes[order[s]!]!;
    leafHash.push(j > 0 && hashes[order[s - 1]!] === h ? (h | 1) >>> 0 : h);
    leafBlock.push(firstLeaf + j);
  }
  b.fill(0);
  putEntry(b, 0, self, 12, DOT, FT_DIR);
  putEntry(b, 12, parent, BLOCK - 12, DOTDOT, FT_DIR);
  b.writeUInt32LE(0, 24);
  b.writeUInt8(HASH_HALF_MD4, 28);
  b.writeUInt8(8, 29);
  b.writeUInt8(shape.nodes > 0 ? 1 : 0, 30);
  b.writeUInt8(0, 31);
  if (shape.nodes === 0) {
    dxEntries(b, 32, ROOT_LIMIT, leafHash, leafBlock, 0, leafHash.length);
    dxTail(b, 32, leafHash.length, ROOT_LIMIT, seed);
    emit(b);
  } else {
    const nodeHash: number[] = [];
    const nodeBlock: number[] = [];
    for (let n = 0; n < shape.nodes; n++) {
      nodeHash.push(leafHash[n * NODE_LIMIT]!);
      nodeBlock.push(1 + n);
    }
    dxEntries(b, 32, ROOT_LIMIT, nodeHash, nodeBlock, 0, shape.nodes);
    dxTail(b, 32, shape.nodes, ROOT_LIMIT, seed);
    emit(b);
    for (let n = 0; n < shape.nodes; n++) {
      const from = n * NODE_LIMIT;
      const to = Math.min(from + NODE_LIMIT, leafHash.length);
      b.fill(0);
      b.writeUInt32LE(0, 0);
      b.writeUInt16LE(BLOCK, 4);
      dxEntries(b, 8, NODE_LIMIT, leafHash, leafBlock, from, to);
      dxTail(b, 8, to - from, NODE_LIMIT, seed);
      emit(b);
    }
  }
  for (let j = 0; j < starts.length; j++) {
    const from = starts[j]!;
    const to = starts[j + 1] ?? order.length;
    b.fill(0);
    let off = 0;
    for (let k = from; k < to; k++) {
      const i = order[k]!;
      const name = names[i]!;
      const rec = k === to - 1 ? LEAF_SPACE - off : recLen(name.length);
      putEntry(b, off, inos[i]!, rec, name, types[i]!);
      off += rec;
    }
    leafTail(b, seed);
    emit(b);
  }
  return { blocks: shape.total, indexed: true };
}

/** The block writeDir fills and hands out, again and again. */
const SCRATCH = Buffer.alloc(BLOCK);

/** All blocks of a directory in logical order, as copies (for tests; the writer streams them with writeDir). */
export function buildDir(
  self: number,
  parent: number,
  children: DirEntry[],
  hasher: DirHasher,
  seed: number,
  minBlocks = 1,
): DirContent {
  const blocks: Buffer[] = [];
  const list: DirListing = {
    names: children.map((c) => c.name),
    inos: children.map((c) => c.ino),
    types: children.map((c) => c.type),
  };
  const { indexed } = writeDir(self, parent, list, hasher, seed, minBlocks, (b) => blocks.push(Buffer.from(b)));
  return { blocks, indexed };
}
