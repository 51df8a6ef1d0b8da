// Measures a flattened tree for sizing a file system: inode counts by kind, bytes, and the 4 KiB blocks ext4 needs for them.
import type { RootTree } from './tree-edit.js';
import type { DirNode, Node } from './tree.js';

export interface TreeStats {
  /** A hard-linked node counts once in its kind and once per extra name in hardlinks; the root is not in dirs. */
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** fifos, sockets and device nodes */
  specials: number;
  /** whiteout entries applied, over all layers (including opaque markers); 0 for a tree not made from layers */
  whiteouts: number;
  /** extended attributes in the tree (each node's once) */
  xattrs: number;
  /** apparent bytes of regular files */
  bytes: number;
  /**
   * 4 KiB blocks the tree needs on ext4: non-zero data blocks of regular files (holes are free),
   * one for each symlink too long to be stored in the inode, and each directory's entry blocks.
   */
  blocks4k: number;
}

const BLOCK = 4096;
/** Ext4 keeps symlink targets shorter than this in the inode itself. */
const FAST_SYMLINK_MAX = 60;

/** Ext4 directory entries: 8 bytes plus the name padded to 4, and '.' and '..' (12 each). */
function dirBlocks(d: DirNode): number {
  let bytes = 24;
  for (const name of d.entries.keys()) bytes += 8 + ((name.length + 3) & ~3);
  return Math.ceil(bytes / BLOCK);
}

export function treeStats(tree: RootTree, whiteouts = 0): TreeStats {
  const s: TreeStats = {
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    specials: 0,
    whiteouts,
    xattrs: 0,
    bytes: 0,
    blocks4k: 0,
  };
  const seen = new Set<Node>();
  s.xattrs += tree.root.meta.xattrs.size;
  const stack: DirNode[] = [tree.root];
  for (let d = stack.pop(); d; d = stack.pop()) {
    s.blocks4k += dirBlocks(d);
    for (const child of d.entries.values()) {
      if (child.kind === 'dir') {
        s.dirs++;
        s.xattrs += child.meta.xattrs.size;
        stack.push(child);
        continue;
      }
      if (tree.nameCount(child) > 1) {
        if (seen.has(child)) {
          s.hardlinks++;
          continue;
        }
        seen.add(child);
      }
      s.xattrs += child.meta.xattrs.size;
      switch (child.kind) {
        case 'file':
          s.files++;
          s.bytes += child.size;
          s.blocks4k += tree.dataBlocks(child);
          break;
        case 'symlink':
          s.symlinks++;
          if (child.target.length >= FAST_SYMLINK_MAX) s.blocks4k++;
          break;
        default:
          s.specials++;
      }
    }
  }
  return s;
}
