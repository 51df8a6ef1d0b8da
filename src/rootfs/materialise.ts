// Makes a flattened tree real in a host directory, as root (the runc builder's bundle root): owners, modes, times, xattrs, devices, hard links, each entry made relative to its already-open parent.
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  renameSync,
  symlinkSync,
} from 'node:fs';
import { setImmediate as yieldToEvents } from 'node:timers/promises';
import { run } from '../tools/index.js';
import { at, openDirAt, openRoot } from './inroot.js';
import type { SpoolStore } from './spool-store.js';
import type { RootTree } from './tree-edit.js';
import { binPath, showPath } from './tree-path.js';
import type { BinName, DirNode, Node, NodeMeta, Timestamp } from './tree.js';
import { SETFATTR_RESTORE_ARGV, xattrRestoreScript } from './xattr.js';

export interface MaterialiseOptions {
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
}

/** argv for mknod: a device node at an img2vm-chosen path in the spool (never a name from the image). */
export function mknodArgv(path: string, kind: 'char' | 'block', major: number, minor: number): string[] {
  return [path, kind === 'char' ? 'c' : 'b', String(major), String(minor)];
}

/** argv for mkfifo, likewise. */
export function mkfifoArgv(path: string): string[] {
  return [path];
}

const seconds = (t: Timestamp): number => t.sec + t.nsec / 1e9;

/** Entries made between two looks at the event loop, so a signal is seen while a large tree is made. */
const YIELD_EVERY = 2048;

/**
 * Makes tree in dest, an empty directory img2vm made on the same file system as spool, so that the kernel shows
 * what the tree says: every entry with its owner, mode, times and xattrs; device nodes and FIFOs; one inode for
 * all the names of a hard link. Must run as root (owners).
 *
 * Nothing the tree holds is ever followed on the host: a directory is entered by opening it O_NOFOLLOW from its
 * already-open parent, and each entry is made in that parent by name (mkdir, or a rename or link from the spool),
 * so a name or a symlink in the tree cannot lead a write anywhere else, however deep the tree. A file's content is
 * renamed into place when the spool store holds it (each byte written once), and copied into the spool first
 * otherwise. Entries that need a host tool (device nodes, FIFOs, xattrs) are made and finished in the spool under
 * img2vm's own names, before they are moved into place: no image name is ever in a tool's argv or input.
 */
export async function materialise(
  tree: RootTree,
  dest: string,
  spool: SpoolStore,
  o: MaterialiseOptions = {},
): Promise<void> {
  const warn = o.onWarning ?? (() => {});
  const maker = new EntryMaker(tree, spool, warn, o.signal);
  // Entries with xattrs first, in the spool: owned and moded there (chown would drop a capability set before it), then
  // all their xattrs in one setfattr run, then their times.
  const prepared = await maker.prepareXattrs(dest);

  /** Nodes with more names, by their file in the spool: every name is a link to it. */
  const linked = new Map<Node, string>();
  const rootFd = openRoot(dest);
  const frames: { dir: DirNode; fd: number; it: Iterator<[BinName, Node]> }[] = [];
  try {
    fchownSync(rootFd, tree.root.meta.uid, tree.root.meta.gid);
    frames.push({ dir: tree.root, fd: rootFd, it: tree.root.entries.entries() });
    let made = 0;
    while (frames.length > 0) {
      const f = frames[frames.length - 1]!;
      const next = f.it.next();
      if (next.done) {
        // Last, once nothing more is made in it: its mode and times.
        fchmodSync(f.fd, f.dir.meta.mode);
        futimesSync(f.fd, seconds(f.dir.meta.atime ?? f.dir.meta.mtime), seconds(f.dir.meta.mtime));
        frames.pop();
        if (f.fd !== rootFd) closeSync(f.fd);
        continue;
      }
      if (++made % YIELD_EVERY === 0) await yieldToEvents();
      o.signal?.throwIfAborted();
      const [name, node] = next.value;
      const target = at(f.fd, name);
      if (node.kind === 'dir') {
        const from = prepared.get(node);
        if (from) renameSync(from, target);
        else mkdirSync(target, 0o700);
        const fd = openDirAt(f.fd, name);
        if (fd === undefined) throw new Error(`the directory "${showPath(name)}" img2vm just made is gone`);
        frames.push({ dir: node, fd, it: node.entries.entries() });
        if (!from) fchownSync(fd, node.meta.uid, node.meta.gid);
        continue;
      }
      let from = linked.get(node);
      if (from === undefined) {
        from = prepared.get(node) ?? (await maker.make(node, true, name));
        if (from === undefined) continue;
        if (tree.nameCount(node) === 1) {
          renameSync(from, target);
          continue;
        }
        linked.set(node, from);
      }
      linkSync(from, target);
    }
  } finally {
    for (const f of frames) if (f.fd !== rootFd) closeSync(f.fd);
    closeSync(rootFd);
  }
}

/** Makes single entries in the spool, finished but for their place. */
class EntryMaker {
  constructor(
    private readonly tree: RootTree,
    private readonly spool: SpoolStore,
    private readonly warn: (m: string) => void,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /**
   * The nodes that have xattrs, made in the spool and given them (the root's go on dest itself); returns where each
   * is. Their number is bounded by what the flattener lets a tree hold (MAX_TOTAL_XATTR_BYTES).
   */
  async prepareXattrs(dest: string): Promise<Map<Node, string>> {
    const prepared = new Map<Node, string>();
    const items: { path: BinName; attrs: Iterable<[string, Buffer]>; node?: Node }[] = [];
    if (this.tree.root.meta.xattrs.size > 0) items.push({ path: binPath(dest), attrs: this.tree.root.meta.xattrs });
    const stack: DirNode[] = [this.tree.root];
    for (let d = stack.pop(); d; d = stack.pop()) {
      for (const node of d.entries.values()) {
        if (node.kind === 'dir') stack.push(node);
        if (node.meta.xattrs.size === 0 || prepared.has(node)) continue;
        const path = node.kind === 'dir' ? this.dir(node) : await this.make(node, false, '');
        if (path === undefined) continue;
        prepared.set(node, path);
        items.push({ path: binPath(path), attrs: node.meta.xattrs, node });
      }
    }
    if (items.length === 0) return prepared;
    const r = await run('setfattr', SETFATTR_RESTORE_ARGV, {
      input: xattrRestoreScript(items),
      reject: false,
      ...(this.signal ? { signal: this.signal } : {}),
    });
    if (r.exitCode !== 0) {
      for (const line of (r.stderr || r.stdout).split('\n').filter(Boolean))
        this.warn(`extended attribute not set: ${line}`);
    }
    for (const { node } of items) if (node && node.kind !== 'dir') this.times(prepared.get(node)!, node.meta);
    return prepared;
  }

  /** A directory with its owner (its mode and times come when its entries are made). */
  private dir(node: DirNode): string {
    const path = this.spool.scratch();
    mkdirSync(path, 0o700);
    lchownSync(path, node.meta.uid, node.meta.gid);
    return path;
  }

  /** A non-directory with its owner and mode, and its times when `timed`; undefined for what no tool can make (a socket). */
  async make(node: Exclude<Node, DirNode>, timed: boolean, name: BinName): Promise<string | undefined> {
    let path: string;
    switch (node.kind) {
      case 'file': {
        const ref = this.spool.holds(node.data)
          ? node.data
          : await this.spool.putSparse(node.data.store.read(node.data), node.size);
        path = this.spool.take(ref);
        break;
      }
      case 'symlink':
        path = this.spool.scratch();
        symlinkSync(Buffer.from(node.target, 'latin1'), path);
        break;
      case 'fifo':
        path = this.spool.scratch();
        await run('mkfifo', mkfifoArgv(path), this.signal ? { signal: this.signal } : {});
        break;
      case 'char':
      case 'block':
        path = this.spool.scratch();
        await run(
          'mknod',
          mknodArgv(path, node.kind, node.major, node.minor),
          this.signal ? { signal: this.signal } : {},
        );
        break;
      case 'socket':
        this.warn(`the socket "${showPath(name)}" is not made (only a program that listens on it makes one)`);
        return undefined;
    }
    // chown first: it clears setuid, setgid and file capabilities; chmod follows a symlink, which has no mode of its own.
    lchownSync(path, node.meta.uid, node.meta.gid);
    if (node.kind !== 'symlink') chmodSync(path, node.meta.mode);
    if (timed) this.times(path, node.meta);
    return path;
  }

  private times(path: string, meta: NodeMeta): void {
    lutimesSync(path, seconds(meta.atime ?? meta.mtime), seconds(meta.mtime));
  }
}
