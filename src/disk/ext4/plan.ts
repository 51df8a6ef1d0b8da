// Numbers the tree's inodes (breadth first, names in byte order, after lost+found), checks every node, and counts what it needs.
import { Img2vmError } from '../../core/errors.js';
import type { BinName, DirNode, FileNode, Node, NodeMeta } from '../../rootfs/tree.js';
import { Ext4Ref } from './content.js';
import { dirBlocks } from './dir.js';
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
  /** Node by inode number (reserved numbers other than 2 and 11 are empty). */
  nodes: Array<Node | undefined>;
  inoOf: Map<Node, number>;
  /** Parent inode of each directory. */
  parent: Uint32Array;
  /** Link count: names of a non-directory; 2 + subdirectories of a directory (1 past LINK_MAX). */
  links: Uint32Array;
  /** The highest inode number used. */
  lastIno: number;
  /** Root entries including lost+found (synthesised when the tree has none). */
  rootEntries: Map<BinName, Node>;
  /** Files whose bytes must be copied in: another store's, or one of ours already used by another node. */
  copies: FileNode[];
  /** Blocks the copies take at most, with their extent trees. */
  copyBlocks: number;
  /** Directory, symlink, xattr and extent-tree blocks (upper bound for trees of directories). */
  metadataBlocks: number;
  /** Blocks held by file data written through this writer that the tree uses. */
  dataBlocks: number;
  /** The refs of this writer the tree uses (each once; a second use is a copy). */
  usedRefs: Set<Ext4Ref>;
  dirs: number;
}

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

function checkName(name: string, dirPath: string): void {
  if (name.length === 0 || name.length > 255 || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || !isBinary(name)) {
    throw new Img2vmError('badImage', `directory ${displayPath(dirPath)} has an entry whose name ext4 cannot store (${JSON.stringify(displayPath(name))}, ${name.length} bytes)`, 'names are 1 to 255 bytes without "/" or NUL');
  }
}

const isU32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

function checkNode(node: Node, path: () => string, ours: (r: unknown) => r is Ext4Ref): void {
  const m = node.meta;
  if (!isU32(m.uid) || !isU32(m.gid) || !Number.isInteger(m.mode)) {
    throw new Img2vmError('badImage', `${path()} has owner ${m.uid}:${m.gid} or mode ${m.mode}, which ext4 cannot store`, 'owners are 32-bit numbers; the image content is damaged or hostile');
  }
  switch (node.kind) {
    case 'symlink':
      if (node.target.length === 0 || node.target.length > MAX_SYMLINK || !isBinary(node.target)) {
        throw new Img2vmError('badImage', `symlink ${path()} has a target of ${node.target.length} bytes (ext4 stores 1 to ${MAX_SYMLINK})`, 'the image content is damaged or hostile');
      }
      break;
    case 'char':
    case 'block':
      if (!Number.isInteger(node.major) || !Number.isInteger(node.minor) || node.major < 0 || node.minor < 0 || node.major > 0xfff || node.minor > 0xfffff) {
        throw new Img2vmError('badImage', `device ${path()} has number ${node.major}:${node.minor}, beyond Linux's 12-bit major and 20-bit minor`, 'the image content is damaged or hostile');
      }
      break;
    case 'file':
      if (ours(node.data)) {
        if (node.data.released) throw new Error(`${path()} refers to content that was released`);
        if (node.data.size !== node.size) throw new Error(`${path()} is ${node.size} bytes but its content is ${node.data.size}`);
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

/** Entries of a directory in byte order of their names. */
export function sortedEntries(entries: Map<BinName, Node>): Array<[BinName, Node]> {
  return [...entries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export function planTree(root: DirNode, epoch: number, hasher: DirHasher, ours: (r: unknown) => r is Ext4Ref): TreePlan {
  if (root.kind !== 'dir') throw new Img2vmError('badImage', 'the root of the tree is not a directory', 'the image content is damaged');
  const lf = root.entries.get(LOST_FOUND);
  if (lf && lf.kind !== 'dir') {
    throw new Img2vmError('badImage', '/lost+found in the image is not a directory', 'ext4 needs /lost+found as a directory; remove the entry from the image');
  }
  const lostFound = lf ?? lostFoundNode(epoch);
  const rootEntries = lf ? root.entries : new Map([...root.entries, [LOST_FOUND, lostFound]]);
  const nodes: Array<Node | undefined> = [];
  const inoOf = new Map<Node, number>();
  const linkList: number[] = [];
  const parentList: number[] = [];
  nodes[ROOT_INO] = root;
  inoOf.set(root, ROOT_INO);
  nodes[LOST_FOUND_INO] = lostFound;
  inoOf.set(lostFound, LOST_FOUND_INO);
  parentList[ROOT_INO] = ROOT_INO;
  let next = FIRST_INO + 1;
  const used = new Set<Ext4Ref>();
  const copies: FileNode[] = [];
  let copyBlocks = 0;
  let metadataBlocks = 1; // the resize inode's double-indirect block
  let dataBlocks = 0;
  let dirs = 0;

  const account = (node: Node, path: () => string): void => {
    checkNode(node, path, ours);
    if (node.meta.xattrs.size > 0 && layoutXattrs(node.meta.xattrs, path).block.length > 0) metadataBlocks++;
    if (node.kind === 'symlink' && node.target.length > FAST_SYMLINK_MAX) metadataBlocks++;
    if (node.kind === 'file') {
      const r = node.data;
      if (ours(r) && !used.has(r)) {
        used.add(r);
        dataBlocks += r.blocks;
        metadataBlocks += treeBlocksFor(r.extentCount);
      } else {
        copies.push(node);
        const n = Math.ceil(node.size / BLOCK);
        copyBlocks += n + treeBlocksFor(n);
      }
    }
  };

  const queue: Array<[DirNode, string]> = [[root, '/']];
  const placed = new Set<Node>([root]);
  account(root, () => '/');
  for (let qi = 0; qi < queue.length; qi++) {
    const [dir, dirPath] = queue[qi]!;
    const dirIno = inoOf.get(dir)!;
    const entries = sortedEntries(dir === root ? rootEntries : dir.entries);
    const nameLens: number[] = [];
    let subdirs = 0;
    for (const [name, child] of entries) {
      checkName(name, dirPath);
      nameLens.push(name.length);
      const childBin = `${dirPath === '/' ? '' : dirPath}/${name}`;
      const childPath = (): string => displayPath(childBin);
      if (child.kind === 'dir') {
        subdirs++;
        if (placed.has(child)) {
          throw new Img2vmError('badImage', `directory ${childPath()} appears under more than one name (a hard-linked directory)`, 'the image content is damaged or hostile');
        }
        placed.add(child);
        let ino = inoOf.get(child);
        if (ino === undefined) {
          ino = next++;
          inoOf.set(child, ino);
          nodes[ino] = child;
        }
        account(child, childPath);
        parentList[ino] = dirIno;
        queue.push([child, childBin]);
        continue;
      }
      const ino = inoOf.get(child);
      if (ino === undefined) {
        const n = next++;
        inoOf.set(child, n);
        nodes[n] = child;
        linkList[n] = 1;
        account(child, childPath);
      } else {
        linkList[ino] = linkList[ino]! + 1;
        if (linkList[ino]! > LINK_MAX) {
          throw new Img2vmError('badImage', `${childPath()} has more than ${LINK_MAX} hard links, more than ext4 allows`, 'the image content is damaged or hostile');
        }
      }
    }
    dirs++;
    const lost = dir === lostFound;
    const blocks = dirBlocks(nameLens, () => new Uint32Array(entries.map(([n]) => hasher.hash(n))), lost ? LOST_FOUND_BLOCKS : 1);
    metadataBlocks += blocks + treeBlocksFor(blocks);
    const l = 2 + subdirs;
    linkList[dirIno] = l > LINK_MAX ? 1 : l;
  }
  const lastIno = next - 1;
  const links = new Uint32Array(lastIno + 1);
  const parent = new Uint32Array(lastIno + 1);
  for (let i = 0; i <= lastIno; i++) {
    links[i] = linkList[i] ?? 0;
    parent[i] = parentList[i] ?? 0;
  }
  return { nodes, inoOf, parent, links, lastIno, rootEntries, copies, copyBlocks, metadataBlocks, dataBlocks, usedRefs: used, dirs };
}
