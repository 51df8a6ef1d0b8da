// The inode pass: every inode in number order, with the directory, symlink, xattr and extent blocks it owns, streamed per group.
import type { DirNode, FileNode, Node } from '../../rootfs/tree.js';
import type { Allocator } from './alloc.js';
import type { BatchWriter } from './batch.js';
import type { Ext4Ref } from './content.js';
import { buildDir, FT_BLK, FT_CHR, FT_DIR, FT_FIFO, FT_LNK, FT_REG, FT_SOCK, type DirEntry } from './dir.js';
import type { DirHasher } from './dirhash.js';
import { buildExtentTree } from './extents.js';
import { BLOCK, INODE_SIZE, JOURNAL_INO, LOST_FOUND_INO, MAX_EXTENT_LEN, RESIZE_INO, backupGroups } from './geometry.js';
import {
  EXTENTS_FL, INDEX_FL, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK,
  encodeInode, inodeSeed, type InodeFields,
} from './inode.js';
import { journalExtents, type FixedPlacement, type Geometry } from './layout.js';
import { FAST_SYMLINK_MAX, LOST_FOUND_BLOCKS, sortedEntries, type TreePlan } from './plan.js';
import { ibodyArea, layoutXattrs, xattrBlock } from './xattr.js';

export interface InodePass {
  plan: TreePlan;
  geo: Geometry;
  fixed: FixedPlacement;
  alloc: Allocator;
  batch: BatchWriter;
  fsSeed: number;
  hasher: DirHasher;
  epoch: number;
  /** The ref whose blocks a file uses (copies resolved). */
  refOf: (node: FileNode) => Ext4Ref;
  /** Reserved descriptor blocks (after the table in every backup group). */
  reservedGdtBlocks: number;
  /** The resize inode's double-indirect block. */
  resizeDind: number;
}

const TYPE: Record<Node['kind'], [number, number]> = {
  file: [S_IFREG, FT_REG],
  dir: [S_IFDIR, FT_DIR],
  symlink: [S_IFLNK, FT_LNK],
  char: [S_IFCHR, FT_CHR],
  block: [S_IFBLK, FT_BLK],
  fifo: [S_IFIFO, FT_FIFO],
  socket: [S_IFSOCK, FT_SOCK],
};

/** Blocks taken one by one from the allocator, written, and returned as extents. */
function writeBlocks(p: InodePass, blocks: Buffer[]): number[] {
  const ext: number[] = [];
  for (let l = 0; l < blocks.length; l++) {
    const b = p.alloc.alloc();
    p.batch.block(b, blocks[l]!);
    const n = ext.length;
    if (n > 0 && ext[n - 2]! + ext[n - 1]! === b && ext[n - 1]! < MAX_EXTENT_LEN) ext[n - 1]!++;
    else ext.push(l, b, 1);
  }
  return ext;
}

/** Writes an extent tree's blocks and returns its root and the number of tree blocks. */
function tree(p: InodePass, ext: readonly number[], seed: number): [Buffer, number] {
  const t = buildExtentTree(ext, () => p.alloc.alloc(), seed);
  for (const b of t.blocks) p.batch.block(b.block, b.data);
  return [t.root, t.blocks.length];
}

function deviceIBlock(major: number, minor: number): Buffer {
  const b = Buffer.alloc(60);
  if (major < 256 && minor < 256) b.writeUInt32LE((major << 8) | minor, 0);
  else b.writeUInt32LE(((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, 4);
  return b;
}

function nodeInode(p: InodePass, ino: number, node: Node): InodeFields {
  const m = node.meta;
  const seed = inodeSeed(p.fsSeed, ino);
  const epoch = { sec: p.epoch, nsec: 0 };
  const f: InodeFields = {
    mode: TYPE[node.kind][0] | (m.mode & 0o7777),
    uid: m.uid >>> 0,
    gid: m.gid >>> 0,
    size: 0,
    mtime: m.mtime,
    atime: m.atime ?? m.mtime,
    ctime: m.ctime ?? m.mtime,
    crtime: epoch,
    links: p.plan.links[ino]!,
    sectors: 0,
    flags: 0,
    fileAcl: 0,
  };
  let blocks = 0;
  if (m.xattrs.size > 0) {
    const l = layoutXattrs(m.xattrs, () => `inode ${ino}`);
    f.ibodyXattrs = ibodyArea(l);
    if (l.block.length > 0) {
      f.fileAcl = p.alloc.alloc();
      p.batch.block(f.fileAcl, xattrBlock(l, f.fileAcl, p.fsSeed));
      blocks++;
    }
  }
  switch (node.kind) {
    case 'dir': {
      const entries = sortedEntries(ino === 2 ? p.plan.rootEntries : (node as DirNode).entries);
      const children: DirEntry[] = entries.map(([name, child]) => ({ name, ino: p.plan.inoOf.get(child)!, type: TYPE[child.kind][1] }));
      const d = buildDir(ino, p.plan.parent[ino]!, children, p.hasher, seed, ino === LOST_FOUND_INO ? LOST_FOUND_BLOCKS : 1);
      const [root, t] = tree(p, writeBlocks(p, d.blocks), seed);
      f.iblock = root;
      f.flags = EXTENTS_FL | (d.indexed ? INDEX_FL : 0);
      f.size = d.blocks.length * BLOCK;
      blocks += d.blocks.length + t;
      break;
    }
    case 'file': {
      const r = p.refOf(node);
      const [root, t] = tree(p, r.extents, seed);
      f.iblock = root;
      f.flags = EXTENTS_FL;
      f.size = node.size;
      blocks += r.blocks + t;
      break;
    }
    case 'symlink': {
      const target = Buffer.from(node.target, 'latin1');
      f.size = target.length;
      if (target.length <= FAST_SYMLINK_MAX) {
        f.iblock = Buffer.alloc(60);
        target.copy(f.iblock);
      } else {
        const [root, t] = tree(p, writeBlocks(p, [target]), seed);
        f.iblock = root;
        f.flags = EXTENTS_FL;
        blocks += 1 + t;
      }
      break;
    }
    case 'char':
    case 'block':
      f.iblock = deviceIBlock(node.major, node.minor);
      break;
    default:
      break;
  }
  f.sectors = blocks * (BLOCK / 512);
  return f;
}

function reservedInode(p: InodePass, ino: number): InodeFields | undefined {
  const t = { sec: p.epoch, nsec: 0 };
  const base = { uid: 0, gid: 0, atime: t, ctime: t, mtime: t, crtime: t, fileAcl: 0 };
  if (ino === RESIZE_INO) {
    const iblock = Buffer.alloc(60);
    iblock.writeUInt32LE(p.resizeDind, 13 * 4);
    const backups = backupGroups(p.geo.groups).length;
    const apb = BLOCK / 4;
    return {
      ...base, mode: S_IFREG | 0o600, links: 1, flags: 0, iblock,
      size: (apb * apb + apb + 12) * BLOCK,
      sectors: (1 + p.reservedGdtBlocks * (1 + backups)) * (BLOCK / 512),
    };
  }
  if (ino === JOURNAL_INO) {
    const ext = journalExtents(p.fixed);
    const l = p.fixed.journal.reduce((s, [, n]) => s + n, 0);
    const [root] = tree(p, ext, inodeSeed(p.fsSeed, ino));
    return { ...base, mode: S_IFREG | 0o600, links: 1, flags: EXTENTS_FL, iblock: root, size: l * BLOCK, sectors: l * (BLOCK / 512) };
  }
  // The bad-blocks inode carries the creation time, as mke2fs leaves it; the others stay empty.
  if (ino === 1) return { ...base, crtime: { sec: 0, nsec: 0 }, mode: 0, links: 0, flags: 0, size: 0, sectors: 0, extraIsize: 0 };
  return undefined;
}

/** Writes all inode tables (used part only) and returns the directories per group. */
export function writeInodeTables(p: InodePass): number[] {
  const { inodesPerGroup: ipg, groups } = p.geo;
  const usedDirs = new Array<number>(groups).fill(0);
  const last = p.plan.lastIno;
  for (let g = 0; g < groups && g * ipg < last; g++) {
    const count = Math.min(ipg, last - g * ipg);
    const buf = Buffer.alloc(Math.ceil(count / (BLOCK / INODE_SIZE)) * BLOCK);
    for (let i = 0; i < count; i++) {
      const ino = g * ipg + i + 1;
      const node = p.plan.nodes[ino];
      const f = node ? nodeInode(p, ino, node) : reservedInode(p, ino);
      if (node?.kind === 'dir') usedDirs[g]!++;
      encodeInode(buf, i * INODE_SIZE, f ?? emptyInode(), ino, p.fsSeed);
    }
    p.batch.blocksAt(p.fixed.inodeTables[g]!, buf);
  }
  return usedDirs;
}

function emptyInode(): InodeFields {
  const z = { sec: 0, nsec: 0 };
  return { mode: 0, uid: 0, gid: 0, size: 0, atime: z, ctime: z, mtime: z, crtime: z, links: 0, sectors: 0, flags: 0, fileAcl: 0, extraIsize: 0 };
}
