// What flattening measured about the final tree, for sizing its file system.
import { chmodSync, lutimesSync, readdirSync } from 'node:fs';
import { fsPath, joinRel, lstatOpt, type BinPath, type RootResolver } from './safepath.js';

const BLOCK = 4096;
/** Ext4 keeps symlink targets shorter than this in the inode itself. */
const FAST_SYMLINK_MAX = 60;

/** What the flattener remembers of the entries it made. */
export interface Known {
  xattrNames: Map<BinPath, Set<string>>;
  fileBlocks: Map<number, number>;
  deferred: Map<BinPath, { mode: number; mtime: number }>;
}

export interface FlattenStats {
  /** Counts describe the final tree (after all whiteouts); a hard-linked inode counts once in its type and once per extra name in hardlinks. */
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** fifos and device nodes */
  specials: number;
  /** whiteout entries applied, over all layers (including opaque markers) */
  whiteouts: number;
  /** extended attributes from the image present in the final tree */
  xattrs: number;
  /** apparent bytes of regular files */
  bytes: number;
  /**
   * 4 KiB blocks the tree needs on ext4: non-zero data blocks of regular files (holes are free),
   * one for each symlink too long to be stored in the inode, and each directory's entry blocks.
   */
  blocks4k: number;
}

export interface FlattenOptions {
  onWarning?: (msg: string) => void;
  signal?: AbortSignal;
}

/** Post-order walk of the real tree (never through symlinks): statistics, then each directory's deferred metadata. */
export function measureTree(resolver: RootResolver, known: Known, stats: FlattenStats, rel: BinPath = '', seen = new Set<number>()): void {
  const abs = resolver.abs(rel);
  let dirBytes = 24; // '.' and '..'
  for (const child of readdirSync(fsPath(abs), { encoding: 'buffer' })) {
    dirBytes += 8 + ((child.length + 3) & ~3);
    const crel = joinRel(rel, child.toString('latin1'));
    const st = lstatOpt(resolver.abs(crel));
    if (!st) continue;
    if (st.isDirectory()) {
      stats.dirs++;
      stats.xattrs += known.xattrNames.get(crel)?.size ?? 0;
      measureTree(resolver, known, stats, crel, seen);
      continue;
    }
    if (st.nlink > 1) {
      if (seen.has(st.ino)) {
        stats.hardlinks++;
        continue;
      }
      seen.add(st.ino);
    }
    stats.xattrs += known.xattrNames.get(crel)?.size ?? 0;
    if (st.isFile()) {
      stats.files++;
      stats.bytes += st.size;
      stats.blocks4k += known.fileBlocks.get(st.ino) ?? Math.ceil(st.blocks / 8);
    } else if (st.isSymbolicLink()) {
      stats.symlinks++;
      if (st.size >= FAST_SYMLINK_MAX) stats.blocks4k++;
    } else {
      stats.specials++;
    }
  }
  stats.blocks4k += Math.ceil(dirBytes / BLOCK);
  const meta = known.deferred.get(rel);
  if (meta) {
    chmodSync(fsPath(abs), meta.mode);
    lutimesSync(fsPath(abs), meta.mtime, meta.mtime);
  }
}
