// The inode pass: every inode in number order, with the directory, symlink, xattr and extent blocks it owns, streamed per group.
import type { DirNode, FileNode, Node } from '../../rootfs/tree.js';
import type { Allocator } from './alloc.js';
import type { BatchWriter } from './batch.js';
import type { Ext4Ref } from './content.js';
import { FILE_TYPE, FT_DIR, writeDir, type DirListing } from './dir.js';
import type { DirHasher } from './dirhash.js';
import { buildExtentTree, extentRootInPlace } from './extents.js';
import { Fifo } from './fifo.js';
import {
  BLOCK,
  FIRST_INO,
  INODE_SIZE,
  JOURNAL_INO,
  LOST_FOUND_INO,
  MAX_EXTENT_LEN,
  RESIZE_INO,
  ROOT_INO,
  backupGroups,
} from './geometry.js';
import {
  EXTENTS_FL,
  INDEX_FL,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
  encodeInode,
  inodeSeed,
  type InodeFields,
} from './inode.js';
import { journalExtents, type FixedPlacement, type Geometry } from './layout.js';
import {
  childOf,
  FAST_SYMLINK_MAX,
  LINK_MAX,
  LOST_FOUND_BLOCKS,
  plannedIno,
  sortedNames,
  type TreePlan,
} from './plan.js';
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
  /** The writer's test for its own refs (the plan numbered files through them). */
  ours: (r: unknown) => r is Ext4Ref;
  /** The ref whose blocks a file uses (copies resolved). */
  refOf: (node: FileNode) => Ext4Ref;
  /** Reserved descriptor blocks (after the table in every backup group). */
  reservedGdtBlocks: number;
  /** The resize inode's double-indirect block. */
  resizeDind: number;
}

const MODE_TYPE: Record<Node['kind'], number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
  socket: S_IFSOCK,
};

/** Offset of i_block in the on-disk inode. */
const IBLOCK = 0x28;

/**
 * The tree's nodes in inode order, found again by walking it breadth first as the plan did. A
 * directory's entries are numbered when its own inode is written (its blocks list them), and handed
 * out later, when their turn comes, by going through its names again: what is held is the queue of
 * directories whose entries are still to come, not a slot for every node numbered and not written.
 */
class InodeWalk {
  private readonly dirs = new Fifo<DirNode | number>();
  /** The next number a listing gives, and the next number take() hands out. */
  private numbered = FIRST_INO + 1;
  private handed = FIRST_INO + 1;
  /** The directory whose entries take() is going through, its inode, its names and where it is in them. */
  private cur: DirNode | undefined;
  private curIno = 0;
  private names: string[] = [];
  private at = 0;
  /** The node take() found, and for a directory its parent's inode. */
  node: Node | undefined;
  parent = 0;

  constructor(private readonly p: InodePass) {}

  /** Numbers dir's entries as the plan did and lists them for the directory's blocks; they are handed out after those of the directories listed before. */
  list(dir: DirNode, self: number): { list: DirListing; subdirs: number } {
    const { plan, ours } = this.p;
    const names = sortedNames(dir, plan);
    const inos = new Uint32Array(names.length);
    const types = new Uint8Array(names.length);
    let subdirs = 0;
    for (let i = 0; i < names.length; i++) {
      const child = childOf(dir, names[i]!, plan);
      types[i] = FILE_TYPE[child.kind];
      if (child.kind === 'dir') {
        subdirs++;
        inos[i] = child === plan.lostFound ? LOST_FOUND_INO : this.numbered++;
        continue;
      }
      const ino = plannedIno(plan, child, ours);
      if (ino === undefined || ino > this.numbered) throw changed();
      if (ino === this.numbered) this.numbered++;
      inos[i] = ino;
    }
    this.dirs.push(dir);
    this.dirs.push(self);
    return { list: { names, inos, types }, subdirs };
  }

  /** The node with the next inode number. */
  take(): void {
    const { plan, ours } = this.p;
    for (;;) {
      if (this.cur === undefined || this.at === this.names.length) {
        if (this.dirs.length === 0) throw changed();
        this.cur = this.dirs.shift() as DirNode;
        this.curIno = this.dirs.shift() as number;
        this.names = sortedNames(this.cur, plan);
        this.at = 0;
        continue;
      }
      const child = childOf(this.cur, this.names[this.at++]!, plan);
      if (child.kind === 'dir') {
        // lost+found's inode (11) came long before: only its entries are numbered, at its turn.
        if (child === plan.lostFound) {
          this.list(child, LOST_FOUND_INO);
          continue;
        }
        this.node = child;
        this.parent = this.curIno;
        this.handed++;
        return;
      }
      const ino = plannedIno(plan, child, ours);
      if (ino === undefined || ino > this.handed) throw changed();
      if (ino === this.handed) {
        this.node = child;
        this.parent = 0;
        this.handed++;
        return;
      }
    }
  }

  /** The highest number numbered and handed out: both the plan's last when the walk is done. */
  get lastIno(): number {
    return this.numbered === this.handed ? this.handed - 1 : -1;
  }
}

function changed(): Error {
  return new Error('the tree changed between the plan and the inode pass');
}

/** Writes an extent tree's blocks (when the extents do not fit the inode) and its root at off of buf; returns the tree blocks. */
function extentTree(p: InodePass, ext: readonly number[], seed: number, buf: Buffer, off: number): number {
  if (extentRootInPlace(ext, buf, off)) return 0;
  const t = buildExtentTree(ext, () => p.alloc.alloc(), seed);
  for (const b of t.blocks) p.batch.block(b.block, b.data);
  buf.set(t.root, off);
  return t.blocks.length;
}

function deviceIBlock(buf: Buffer, off: number, major: number, minor: number): void {
  if (major < 256 && minor < 256) buf.writeUInt32LE((major << 8) | minor, off);
  else buf.writeUInt32LE(((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0, off + 4);
}

/**
 * Fills f (reused for every inode) for node and writes what the inode points at; i_block goes
 * straight into the inode at off of buf, which is zero there.
 */
function nodeInode(
  p: InodePass,
  f: InodeFields,
  buf: Buffer,
  off: number,
  ino: number,
  node: Node,
  links: number,
  dirList?: DirListing,
  parent = 0,
): void {
  const m = node.meta;
  const seed = inodeSeed(p.fsSeed, ino);
  f.mode = MODE_TYPE[node.kind] | (m.mode & 0o7777);
  f.uid = m.uid >>> 0;
  f.gid = m.gid >>> 0;
  f.size = 0;
  f.mtime = m.mtime;
  f.atime = m.atime ?? m.mtime;
  f.ctime = m.ctime ?? m.mtime;
  f.links = links;
  f.flags = 0;
  f.fileAcl = 0;
  f.iblock = undefined;
  f.ibodyXattrs = undefined;
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
      // Blocks are taken and written as the directory makes them, in logical order; their extents close runs as they break.
      const ext: number[] = [];
      let l = 0;
      const d = writeDir(
        ino,
        parent,
        dirList!,
        p.hasher,
        seed,
        ino === LOST_FOUND_INO ? LOST_FOUND_BLOCKS : 1,
        (block) => {
          const b = p.alloc.alloc();
          p.batch.block(b, block);
          const n = ext.length;
          if (n > 0 && ext[n - 2]! + ext[n - 1]! === b && ext[n - 1]! < MAX_EXTENT_LEN) ext[n - 1]!++;
          else ext.push(l, b, 1);
          l++;
        },
      );
      const t = extentTree(p, ext, seed, buf, off + IBLOCK);
      f.flags = EXTENTS_FL | (d.indexed ? INDEX_FL : 0);
      f.size = d.blocks * BLOCK;
      blocks += d.blocks + t;
      break;
    }
    case 'file': {
      const r = p.refOf(node);
      const t = extentTree(p, r.extents, seed, buf, off + IBLOCK);
      f.flags = EXTENTS_FL;
      f.size = node.size;
      blocks += r.blocks + t;
      break;
    }
    case 'symlink': {
      f.size = node.target.length;
      if (node.target.length <= FAST_SYMLINK_MAX) {
        buf.write(node.target, off + IBLOCK, 'latin1');
      } else {
        const b = p.alloc.alloc();
        p.batch.block(b, Buffer.from(node.target, 'latin1'));
        const t = extentTree(p, [0, b, 1], seed, buf, off + IBLOCK);
        f.flags = EXTENTS_FL;
        blocks += 1 + t;
      }
      break;
    }
    case 'char':
    case 'block':
      deviceIBlock(buf, off + IBLOCK, node.major, node.minor);
      break;
    default:
      break;
  }
  f.sectors = blocks * (BLOCK / 512);
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
      ...base,
      mode: S_IFREG | 0o600,
      links: 1,
      flags: 0,
      iblock,
      size: (apb * apb + apb + 12) * BLOCK,
      sectors: (1 + p.reservedGdtBlocks * (1 + backups)) * (BLOCK / 512),
    };
  }
  if (ino === JOURNAL_INO) {
    const ext = journalExtents(p.fixed);
    const l = p.fixed.journal.reduce((s, [, n]) => s + n, 0);
    const iblock = Buffer.alloc(60);
    extentTree(p, ext, inodeSeed(p.fsSeed, ino), iblock, 0);
    return {
      ...base,
      mode: S_IFREG | 0o600,
      links: 1,
      flags: EXTENTS_FL,
      iblock,
      size: l * BLOCK,
      sectors: l * (BLOCK / 512),
    };
  }
  // The bad-blocks inode carries the creation time, as mke2fs leaves it; the others stay empty.
  if (ino === 1)
    return { ...base, crtime: { sec: 0, nsec: 0 }, mode: 0, links: 0, flags: 0, size: 0, sectors: 0, extraIsize: 0 };
  return undefined;
}

/** Link count of a directory: 2 and one per subdirectory, or 1 (dir_nlink) past what an inode counts. */
function dirLinks(subdirs: number): number {
  const l = 2 + subdirs;
  return l > LINK_MAX ? 1 : l;
}

/** Inodes encoded before they are written out: 1 MiB of a group's table (8 MiB whole), few write calls either way. */
const PIECE_INODES = 4096;

/** Writes all inode tables (used part only) and returns the directories per group. */
export function writeInodeTables(p: InodePass): number[] {
  const { inodesPerGroup: ipg, groups } = p.geo;
  const { plan } = p;
  const usedDirs = new Array<number>(groups).fill(0);
  const last = plan.lastIno;
  const walk = new InodeWalk(p);
  const epoch = { sec: p.epoch, nsec: 0 };
  const f: InodeFields = {
    mode: 0,
    uid: 0,
    gid: 0,
    size: 0,
    atime: epoch,
    ctime: epoch,
    mtime: epoch,
    crtime: epoch,
    links: 0,
    sectors: 0,
    flags: 0,
    fileAcl: 0,
  };
  const perBlock = BLOCK / INODE_SIZE;
  // One buffer for every piece of every table: the target has it written out before it is filled again.
  const piece = Buffer.alloc(PIECE_INODES * INODE_SIZE);
  for (let g = 0; g < groups && g * ipg < last; g++) {
    const count = Math.min(ipg, last - g * ipg);
    for (let from = 0; from < count; from += PIECE_INODES) {
      const n = Math.min(PIECE_INODES, count - from);
      const buf = piece.subarray(0, Math.ceil(n / perBlock) * BLOCK);
      buf.fill(0);
      for (let i = 0; i < n; i++) {
        const ino = g * ipg + from + i + 1;
        const off = i * INODE_SIZE;
        if (ino < FIRST_INO && ino !== ROOT_INO) {
          encodeInode(buf, off, reservedInode(p, ino) ?? emptyInode(), ino, p.fsSeed);
          continue;
        }
        let node: Node;
        let links: number;
        let list: DirListing | undefined;
        let parent = ROOT_INO;
        if (ino === ROOT_INO || ino === LOST_FOUND_INO) {
          node = ino === ROOT_INO ? plan.root : plan.lostFound;
          // lost+found's entries were numbered by the plan: the walk reaches them only later.
          const l =
            ino === ROOT_INO
              ? walk.list(plan.root, ROOT_INO)
              : { list: plan.lostFoundList, subdirs: countDirs(plan.lostFoundList) };
          list = l.list;
          links = dirLinks(l.subdirs);
        } else {
          walk.take();
          node = walk.node!;
          parent = walk.parent;
          if (node.kind === 'dir') {
            const l = walk.list(node, ino);
            list = l.list;
            links = dirLinks(l.subdirs);
          } else {
            links = plan.links.get(ino) ?? 1;
          }
        }
        if (node.kind === 'dir') usedDirs[g]!++;
        nodeInode(p, f, buf, off, ino, node, links, list, parent);
        encodeInode(buf, off, f, ino, p.fsSeed);
      }
      // Pieces are whole blocks (4096 inodes are 256 of them), so they tile the table as one buffer would.
      p.batch.blocksAt(p.fixed.inodeTables[g]! + from / perBlock, buf);
    }
  }
  if (walk.lastIno !== last) throw changed();
  return usedDirs;
}

function countDirs(list: DirListing): number {
  let n = 0;
  for (let i = 0; i < list.types.length; i++) if (list.types[i] === FT_DIR) n++;
  return n;
}

function emptyInode(): InodeFields {
  const z = { sec: 0, nsec: 0 };
  return {
    mode: 0,
    uid: 0,
    gid: 0,
    size: 0,
    atime: z,
    ctime: z,
    mtime: z,
    crtime: z,
    links: 0,
    sectors: 0,
    flags: 0,
    fileAcl: 0,
    extraIsize: 0,
  };
}
