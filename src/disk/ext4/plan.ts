// Numbers the tree's inodes (breadth first, names in byte order, after lost+found), checks every node, and counts what it needs.
import { Img2vmError } from '../../core/errors.js';
import type { DirNode, FileNode, Node, NodeMeta } from '../../rootfs/tree.js';
import { Ext4Ref } from './content.js';
import { dirBlocks, FILE_TYPE, type DirListing } from './dir.js';
import type { DirHasher } from './dirhash.js';
import { treeBlocksFor } from './extents.js';
import { BLOCK, FIRST_INO, LOST_FOUND_INO, ROOT_INO } from './geometry.js';
import { layoutXattrs } from './xattr.js';

/** The kernel's limit on links to one inode. */
export const LINK_MAX = 65000;
export const LOST_FOUND = 'lost+found';
/** mke2fs makes lost+found 16 KiB so e2fsck can reconnect files without allocating. */
export const LOST_FOUND_BLOCKS = 4;
/** Longest symlink target the kernel creates (one block less the NUL). */
export const MAX_SYMLINK = BLOCK - 1;
export const FAST_SYMLINK_MAX = 59;

export interface TreePlan {
  /** This plan's mark: each ref of this writer the tree uses carries it, with its first node and inode number (Ext4Ref). */
  mark: number;
  root: DirNode;
  lostFound: DirNode;
  /** lost+found is not in the tree: the root lists it as if it were. */
  madeLostFound: boolean;
  /**
   * Inode numbers of the nodes not numbered through a ref: symlinks, devices, fifos, sockets, files
   * whose content is another store's, and a second node using a ref. Directories need none: each
   * has one name, so the inode pass numbers them as it meets them.
   */
  inoOf: Map<Node, number>;
  /** Link counts of non-directories with more than one name, by inode number (every other has 1). */
  links: Map<number, number>;
  /**
   * lost+found's entries, numbered: its inode (11) comes before the breadth-first walk reaches its
   * entries, so the inode pass cannot number them in time.
   */
  lostFoundList: DirListing;
  /** The highest inode number used. */
  lastIno: number;
  /** Files whose bytes must be copied in: another store's, or one of ours already used by another node. */
  copies: FileNode[];
  /** Blocks the copies take at most, with their extent trees. */
  copyBlocks: number;
  /** Directory, symlink, xattr and extent-tree blocks (upper bound for trees of directories). */
  metadataBlocks: number;
  /** Blocks held by file data written through this writer that the tree uses. */
  dataBlocks: number;
  dirs: number;
}

/** Plans made so far: each gets its own mark, so a ref marked by an earlier plan reads as unused. */
let plans = 0;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A binary path for messages: as UTF-8 when it is, else with the bytes past ASCII as \xNN. */
export function displayPath(bin: string): string {
  try {
    return utf8.decode(Buffer.from(bin, 'latin1'));
  } catch {
    return bin.replace(/[\x80-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
  }
}

function isBinary(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 255) return false;
  return true;
}

function checkName(name: string, dirPath: () => string): void {
  if (
    name.length === 0 ||
    name.length > 255 ||
    name === '.' ||
    name === '..' ||
    name.includes('/') ||
    name.includes('\0') ||
    !isBinary(name)
  ) {
    throw new Img2vmError(
      'badImage',
      `directory ${displayPath(dirPath())} has an entry whose name ext4 cannot store (${JSON.stringify(displayPath(name))}, ${name.length} bytes)`,
      'names are 1 to 255 bytes without "/" or NUL',
    );
  }
}

const isU32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

function checkNode(node: Node, path: () => string, ours: (r: unknown) => r is Ext4Ref): void {
  const m = node.meta;
  if (!isU32(m.uid) || !isU32(m.gid) || !Number.isInteger(m.mode)) {
    throw new Img2vmError(
      'badImage',
      `${path()} has owner ${m.uid}:${m.gid} or mode ${m.mode}, which ext4 cannot store`,
      'owners are 32-bit numbers; the image content is damaged or hostile',
    );
  }
  switch (node.kind) {
    case 'symlink':
      if (node.target.length === 0 || node.target.length > MAX_SYMLINK || !isBinary(node.target)) {
        throw new Img2vmError(
          'badImage',
          `symlink ${path()} has a target of ${node.target.length} bytes (ext4 stores 1 to ${MAX_SYMLINK})`,
          'the image content is damaged or hostile',
        );
      }
      break;
    case 'char':
    case 'block':
      if (
        !Number.isInteger(node.major) ||
        !Number.isInteger(node.minor) ||
        node.major < 0 ||
        node.minor < 0 ||
        node.major > 0xfff ||
        node.minor > 0xfffff
      ) {
        throw new Img2vmError(
          'badImage',
          `device ${path()} has number ${node.major}:${node.minor}, beyond Linux's 12-bit major and 20-bit minor`,
          'the image content is damaged or hostile',
        );
      }
      break;
    case 'file':
      if (ours(node.data)) {
        if (node.data.released) throw new Error(`${path()} refers to content that was released`);
        if (node.data.size !== node.size)
          throw new Error(`${path()} is ${node.size} bytes but its content is ${node.data.size}`);
      }
      break;
    default:
      break;
  }
}

export function lostFoundNode(epoch: number): DirNode {
  const t = { sec: epoch, nsec: 0 };
  const meta: NodeMeta = { mode: 0o700, uid: 0, gid: 0, mtime: t, atime: t, ctime: t, xattrs: new Map() };
  return { kind: 'dir', meta, entries: new Map() };
}

/** The names of a directory in byte order (a binary string holds one byte per char), lost+found added to a root without one. */
export function sortedNames(dir: DirNode, plan: Pick<TreePlan, 'root' | 'madeLostFound'>): string[] {
  const extra = dir === plan.root && plan.madeLostFound;
  const names = new Array<string>(dir.entries.size + (extra ? 1 : 0));
  let i = 0;
  let sorted = true;
  for (const name of dir.entries.keys()) {
    if (i > 0 && name < names[i - 1]!) sorted = false;
    names[i++] = name;
  }
  if (extra) {
    if (i > 0 && LOST_FOUND < names[i - 1]!) sorted = false;
    names[i] = LOST_FOUND;
  }
  // Layers list a directory's names in order more often than not; then there is nothing to sort.
  // The default sort compares UTF-16 code units: byte order for binary strings, and no comparator call per pair.
  return sorted ? names : names.sort();
}

/** The node a name of dir stands for (lost+found made up for a root without one). */
export function childOf(
  dir: DirNode,
  name: string,
  plan: Pick<TreePlan, 'root' | 'madeLostFound' | 'lostFound'>,
): Node {
  return dir === plan.root && plan.madeLostFound && name === LOST_FOUND ? plan.lostFound : dir.entries.get(name)!;
}

/** The inode number a plan gave a non-directory node, or undefined when it has not met it (yet). */
export function plannedIno(
  plan: Pick<TreePlan, 'mark' | 'inoOf'>,
  node: Node,
  ours: (r: unknown) => r is Ext4Ref,
): number | undefined {
  if (node.kind === 'file') {
    const r = node.data;
    if (ours(r) && r.mark === plan.mark && r.owner === node) return r.ino;
  }
  return plan.inoOf.get(node);
}

/**
 * Numbers the tree's inodes breadth first (names in byte order), checks every node, and counts the
 * blocks it needs. It keeps no list of nodes: the inode pass walks the tree again in the same order
 * (itable.ts), and what it cannot find again by walking is here, small for real trees.
 */
export function planTree(
  root: DirNode,
  epoch: number,
  hasher: DirHasher,
  ours: (r: unknown) => r is Ext4Ref,
): TreePlan {
  const plan = newTreePlan(root, epoch);
  const { lostFound } = plan;
  let next = FIRST_INO + 1;
  const account = (node: Node, ino: number, path: () => string): void => accountNode(plan, node, ino, path, ours);

  // The directories in the order they are reached; a message names one by its parent's place here and its name.
  const queue: DirNode[] = [root];
  const upOf: number[] = [-1];
  const nameOf: string[] = [''];
  const pathOf = (qi: number): string => {
    const parts: string[] = [];
    for (let i = qi; i > 0; i = upOf[i]!) parts.push(nameOf[i]!);
    return `/${parts.reverse().join('/')}`;
  };
  const placed = new Set<DirNode>([root]);
  account(root, ROOT_INO, () => '/');
  for (let qi = 0; qi < queue.length; qi++) {
    const dir = queue[qi]!;
    const names = sortedNames(dir, plan);
    const dirPath = (): string => pathOf(qi);
    const childPath = (name: string) => (): string => displayPath(`${qi === 0 ? '' : pathOf(qi)}/${name}`);
    const isLostFound = dir === lostFound;
    const lfInos = isLostFound ? new Uint32Array(names.length) : undefined;
    const lfTypes = isLostFound ? new Uint8Array(names.length) : undefined;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      checkName(name, dirPath);
      const child = childOf(dir, name, plan);
      let ino: number;
      if (child.kind === 'dir') {
        if (placed.has(child)) {
          throw new Img2vmError(
            'badImage',
            `directory ${childPath(name)()} appears under more than one name (a hard-linked directory)`,
            'the image content is damaged or hostile',
          );
        }
        placed.add(child);
        ino = child === lostFound ? LOST_FOUND_INO : next++;
        account(child, ino, childPath(name));
        queue.push(child);
        upOf.push(qi);
        nameOf.push(name);
      } else {
        const known = plannedIno(plan, child, ours);
        if (known === undefined) {
          ino = next++;
          account(child, ino, childPath(name));
        } else {
          ino = known;
          linkAgain(plan, ino, childPath(name));
        }
      }
      if (lfInos) {
        lfInos[i] = ino;
        lfTypes![i] = FILE_TYPE[child.kind];
      }
    }
    if (lfInos) plan.lostFoundList = { names, inos: lfInos, types: lfTypes! };
    plan.dirs++;
    const blocks = dirBlocks(names, hasher, isLostFound ? LOST_FOUND_BLOCKS : 1);
    plan.metadataBlocks += blocks + treeBlocksFor(blocks);
  }
  plan.lastIno = next - 1;
  return plan;
}

/** The plan before the walk: the root and /lost+found checked, nothing counted but the resize inode's block. */
function newTreePlan(root: DirNode, epoch: number): TreePlan {
  if (root.kind !== 'dir')
    throw new Img2vmError('badImage', 'the root of the tree is not a directory', 'the image content is damaged');
  const lf = root.entries.get(LOST_FOUND);
  if (lf && lf.kind !== 'dir') {
    throw new Img2vmError(
      'badImage',
      '/lost+found in the image is not a directory',
      'ext4 needs /lost+found as a directory; remove the entry from the image',
    );
  }
  return {
    mark: ++plans,
    root,
    lostFound: lf ?? lostFoundNode(epoch),
    madeLostFound: !lf,
    inoOf: new Map(),
    links: new Map(),
    lostFoundList: { names: [], inos: [], types: [] },
    lastIno: 0,
    copies: [],
    copyBlocks: 0,
    metadataBlocks: 1, // the resize inode's double-indirect block
    dataBlocks: 0,
    dirs: 0,
  };
}

/** What a node needs besides its inode; a file of ours is marked as this plan's, with its number. */
function accountNode(
  plan: TreePlan,
  node: Node,
  ino: number,
  path: () => string,
  ours: (r: unknown) => r is Ext4Ref,
): void {
  checkNode(node, path, ours);
  if (node.meta.xattrs.size > 0 && layoutXattrs(node.meta.xattrs, path).block.length > 0) plan.metadataBlocks++;
  if (node.kind === 'symlink' && node.target.length > FAST_SYMLINK_MAX) plan.metadataBlocks++;
  if (node.kind === 'dir') return;
  if (node.kind === 'file') {
    const r = node.data;
    if (ours(r) && r.mark !== plan.mark) {
      r.mark = plan.mark;
      r.owner = node;
      r.ino = ino;
      plan.dataBlocks += r.blocks;
      plan.metadataBlocks += treeBlocksFor(r.extentCount);
      return;
    }
    plan.copies.push(node);
    const n = Math.ceil(node.size / BLOCK);
    plan.copyBlocks += n + treeBlocksFor(n);
  }
  plan.inoOf.set(node, ino);
}

/** One more name for an inode already placed, within ext4's link limit. */
function linkAgain(plan: TreePlan, ino: number, path: () => string): void {
  const l = (plan.links.get(ino) ?? 1) + 1;
  if (l > LINK_MAX) {
    throw new Img2vmError(
      'badImage',
      `${path()} has more than ${LINK_MAX} hard links, more than ext4 allows`,
      'the image content is damaged or hostile',
    );
  }
  plan.links.set(ino, l);
}
