// Changes a flattened tree safely: entries are replaced (never written through), and a file's content is released when its last name goes.
import { Img2vmError } from '../core/errors.js';
import { countDataBlocks } from './blocks.js';
import { realPath, resolvePath, showPath, type ResolveOptions, type Resolved } from './tree-path.js';
import {
  NO_XATTRS,
  ownName,
  type BinName,
  type ContentStore,
  type DirNode,
  type FileNode,
  type Node,
  type NodeMeta,
  type Timestamp,
} from './tree.js';

export type Found = Extract<Resolved, { ok: true }>;

/** Metadata for a new entry; what is left out defaults to root:root, the epoch, no xattrs. */
export interface MetaInit {
  mode: number;
  uid?: number;
  gid?: number;
  mtime?: Timestamp;
  atime?: Timestamp;
  ctime?: Timestamp;
  xattrs?: Map<string, Buffer>;
}

export interface RootTreeOptions {
  /** Where writeFile() puts content (ContentRef.store is what release() uses). */
  store: ContentStore;
  /** mtime of the directories made because a path needed them (and of a new root). */
  epoch: Timestamp;
  /** An existing tree to edit; by default an empty root directory 0755 root:root. */
  root?: DirNode;
}

/**
 * A root directory plus what the node objects cannot say themselves: how many names each node has
 * (a hard link is the same object under several names) and how many 4 KiB data blocks of each file
 * are not all zeros (for sizing). Change the tree only through this class, or adopt it again.
 * Both are kept only where they are unusual (several names, a sparse file), so a tree of a million
 * plain files costs no bookkeeping.
 */
export class RootTree {
  readonly root: DirNode;
  readonly store: ContentStore;
  readonly epoch: Timestamp;
  /** Names of the nodes that have more than one; every other node in the tree has one. */
  private readonly names = new Map<Node, number>();
  /** Data blocks of files that have holes (others have ceil(size / 4096)). */
  private readonly blocks = new Map<FileNode, number>();
  /** What dirMeta() gives: one frozen object for every directory made on the way. */
  private readonly madeDirMeta: NodeMeta;
  private entryTotal = 0;
  private nameByteTotal = 0;

  constructor(opts: RootTreeOptions) {
    this.store = opts.store;
    this.epoch = Object.freeze({ ...opts.epoch });
    this.madeDirMeta = Object.freeze({ mode: 0o755, uid: 0, gid: 0, mtime: this.epoch, xattrs: NO_XATTRS });
    this.root = opts.root ?? { kind: 'dir', meta: this.dirMeta(), entries: new Map() };
    if (opts.root) this.countNames();
  }

  /**
   * Names in the tree (the root not counted; a hard link counts once per name): what the tree's
   * memory grows with, for MAX_ENTRIES.
   */
  get entries(): number {
    return this.entryTotal;
  }

  /** Bytes of all names plus, for each name of a symlink, its target: for MAX_NAME_BYTES. */
  get nameBytes(): number {
    return this.nameByteTotal;
  }

  /** Metadata of a directory img2vm makes on its own: 0755 root:root at the epoch, like docker's. Frozen and shared. */
  dirMeta(): NodeMeta {
    return this.madeDirMeta;
  }

  meta(init: MetaInit): NodeMeta {
    const m: NodeMeta = {
      mode: init.mode & 0o7777,
      uid: init.uid ?? 0,
      gid: init.gid ?? 0,
      mtime: init.mtime ?? this.epoch,
      xattrs: init.xattrs ?? NO_XATTRS,
    };
    if (init.atime) m.atime = init.atime;
    if (init.ctime) m.ctime = init.ctime;
    return m;
  }

  /** How many names node, a node of this tree, has. */
  nameCount(node: Node): number {
    return this.names.get(node) ?? 1;
  }

  /** Data blocks of a file that are not all zeros, as counted when its content was stored. */
  dataBlocks(node: FileNode): number {
    return this.blocks.get(node) ?? Math.ceil(node.size / 4096);
  }

  setDataBlocks(node: FileNode, n: number): void {
    if (n === Math.ceil(node.size / 4096)) this.blocks.delete(node);
    else this.blocks.set(node, n);
  }

  // ---- looking up ----

  /** Resolves with chroot semantics; see resolvePath. With create, missing directories get dirMeta(). */
  resolve(path: BinName, opts: { followLast?: boolean; create?: boolean } = {}): Resolved {
    return resolvePath(this.root, path, {
      followLast: opts.followLast ?? false,
      ...(opts.create ? this.creating : {}),
    });
  }

  /** ResolveOptions that make missing directories as members of this tree. */
  readonly creating: Pick<ResolveOptions, 'create' | 'onCreate'> = {
    create: () => this.dirMeta(),
    onCreate: (dir, _parent, name) => this.counted(name, dir, 1),
  };

  /** What path names, following symlinks inside the tree (the final one too unless followLast is false). */
  lookup(path: BinName, opts: { followLast?: boolean } = {}): Node | undefined {
    const r = this.resolve(path, { followLast: opts.followLast ?? true });
    return r.ok ? r.node : undefined;
  }

  /**
   * A file's content (following symlinks), or undefined when path is not a regular file. maxBytes
   * bounds what a hostile image can make img2vm read into memory.
   */
  async readFile(path: BinName, opts: { maxBytes?: number } = {}): Promise<Buffer | undefined> {
    const n = this.lookup(path);
    if (n?.kind !== 'file') return undefined;
    const max = opts.maxBytes ?? 1 << 20;
    if (n.size > max) {
      throw new Img2vmError(
        'badImage',
        `"${showPath(path)}" in the image is ${n.size} bytes; more than ${max} is not read`,
        'check that the image file is what it should be',
      );
    }
    const parts: Buffer[] = [];
    for await (const c of n.data.store.read(n.data)) parts.push(c);
    return Buffer.concat(parts);
  }

  // ---- changing ----

  /**
   * Puts a new node (not one already in the tree: see link) at path, missing parents made,
   * replacing whatever entry is there, a directory with its whole tree. The final component is
   * never followed, so a symlink there is replaced, not written through. Returns where it went.
   */
  put(path: BinName, node: Node): Found {
    const r = this.resolveForWrite(path);
    this.place(r, node);
    return r;
  }

  /** A regular file with the given content, stored in this tree's store. */
  writeFile(path: BinName, content: Uint8Array | string, init: MetaInit): FileNode {
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    const r = this.resolveForWrite(path);
    this.detachAt(r); // first: the store may reuse the old content's space
    const node: FileNode = { kind: 'file', meta: this.meta(init), size: data.length, data: this.store.putBuffer(data) };
    this.setDataBlocks(node, countDataBlocks(data));
    this.place(r, node);
    return node;
  }

  symlink(path: BinName, target: BinName, init: MetaInit = { mode: 0o777 }): Node {
    if (target === '' || target.includes('\0') || target.length >= 4096) {
      throw new Img2vmError(
        'badImage',
        `symlink target for "${showPath(path)}" is empty or invalid`,
        'use a target of 1 to 4095 bytes without NUL',
      );
    }
    const node: Node = { kind: 'symlink', meta: this.meta(init), target };
    this.put(path, node);
    return node;
  }

  /** Another name for the node at target (not following a final symlink); refuses directories. */
  link(path: BinName, target: BinName): Node {
    const t = this.resolve(target);
    const node = t.ok ? t.node : undefined;
    const fail = (why: string): Img2vmError =>
      new Img2vmError(
        'badImage',
        `cannot hard-link "${showPath(path)}" to "${showPath(target)}": ${why}`,
        'link to an existing file',
      );
    if (!node || node.kind === 'dir') throw fail(node ? 'it is a directory' : 'it does not exist');
    const r = this.resolveForWrite(path);
    if (t.ok && r.node?.kind === 'dir' && t.dirs.includes(r.node))
      throw fail('it is inside the directory the link would replace');
    this.placeLink(r, node);
    return node;
  }

  /**
   * The directory at path, made with missing parents. Symlinks are followed, the final one too (as
   * mkdir -p does); an existing directory keeps its metadata. Something else there is an error.
   */
  mkdirp(path: BinName, init?: MetaInit): DirNode {
    const r = resolvePath(this.root, path, { followLast: true, ...this.creating });
    if (!r.ok)
      throw new Img2vmError(
        'badImage',
        `cannot make directory "${showPath(path)}": "/${showPath(r.at)}" is not a directory`,
        'the image has a file where a directory is expected',
      );
    if (r.node?.kind === 'dir') return r.node;
    if (r.node)
      throw new Img2vmError(
        'badImage',
        `cannot make directory "${showPath(path)}": it exists and is not a directory`,
        'the image has a file where a directory is expected',
      );
    const dir: DirNode = { kind: 'dir', meta: init ? this.meta(init) : this.dirMeta(), entries: new Map() };
    this.place(r, dir);
    return dir;
  }

  /** Removes the entry at path (not following a final symlink), a directory with its tree. Returns whether there was one. */
  remove(path: BinName): boolean {
    const r = this.resolve(path);
    if (!r.ok || r.name === null || !r.node) return false;
    this.detachAt(r);
    return true;
  }

  // ---- primitives the flattener uses too ----

  /** Puts a new node under r.name in r's directory, replacing what is there. */
  place(r: Found, node: Node): void {
    if (r.name === null) throw new Error(`cannot replace the directory "/${realPath(r)}" itself`);
    this.setEntry(r.dirs[r.dirs.length - 1]!, r.name, node);
    r.node = node;
  }

  /** Gives node, a non-directory already in the tree, the name r names as well (a hard link). */
  placeLink(r: Found, node: Exclude<Node, DirNode>): void {
    if (r.name === null) throw new Error(`cannot replace the directory "/${realPath(r)}" itself`);
    const dir = r.dirs[r.dirs.length - 1]!;
    if (dir.entries.get(r.name) === node) return;
    this.names.set(node, this.nameCount(node) + 1);
    this.removeEntry(dir, r.name);
    const name = ownName(r.name);
    dir.entries.set(name, node);
    this.counted(name, node, 1);
    r.node = node;
  }

  /**
   * Takes the entry r names out of the tree without releasing anything in it: its content moves
   * elsewhere (/boot to a file system of its own).
   */
  unlink(r: Found): void {
    if (r.name === null || !r.node) return;
    const dir = r.dirs[r.dirs.length - 1]!;
    dir.entries.delete(r.name);
    this.counted(r.name, r.node, -1);
    r.node = undefined;
  }

  /** Removes the entry r names, if any. */
  detachAt(r: Found): void {
    if (r.name === null || !r.node) return;
    this.removeEntry(r.dirs[r.dirs.length - 1]!, r.name);
    r.node = undefined;
  }

  /** dir's entry name becomes node, a new node; what was there loses that name. */
  setEntry(dir: DirNode, name: BinName, node: Node): void {
    const old = dir.entries.get(name);
    if (old) {
      this.counted(name, old, -1);
      this.detach(old);
      dir.entries.set(name, node);
    } else {
      name = ownName(name);
      dir.entries.set(name, node);
    }
    this.counted(name, node, 1);
  }

  removeEntry(dir: DirNode, name: BinName): void {
    const old = dir.entries.get(name);
    if (!old) return;
    dir.entries.delete(name);
    this.counted(name, old, -1);
    this.detach(old);
  }

  /** Removes every entry of dir. */
  clear(dir: DirNode): void {
    for (const [name, child] of dir.entries) {
      this.counted(name, child, -1);
      this.detach(child);
    }
    dir.entries.clear();
  }

  /** Counts a name coming (sign 1) or going (-1) with what it names, a directory's whole tree included. */
  private counted(name: BinName, node: Node, sign: 1 | -1): void {
    let n = 1;
    let bytes = name.length + (node.kind === 'symlink' ? node.target.length : 0);
    if (node.kind === 'dir' && node.entries.size > 0) {
      const stack: DirNode[] = [node];
      for (let d = stack.pop(); d; d = stack.pop()) {
        for (const [k, c] of d.entries) {
          n++;
          bytes += k.length + (c.kind === 'symlink' ? c.target.length : 0);
          if (c.kind === 'dir') stack.push(c);
        }
      }
    }
    this.entryTotal += sign * n;
    this.nameByteTotal += sign * bytes;
  }

  private resolveForWrite(path: BinName): Found {
    const r = this.resolve(path, { create: true });
    if (!r.ok)
      throw new Img2vmError(
        'badImage',
        `cannot write "${showPath(path)}": "/${showPath(r.at)}" is not a directory`,
        'the image has a file where a directory is expected',
      );
    if (r.name === null)
      throw new Img2vmError(
        'badImage',
        `cannot write "${showPath(path)}": it names a directory`,
        'name a file, not a directory',
      );
    return r;
  }

  /** The node loses one name; with its last, a file's content is released (a directory's whole tree goes). */
  private detach(node: Node): void {
    const n = this.names.get(node);
    if (n !== undefined) {
      if (n > 2) this.names.set(node, n - 1);
      else this.names.delete(node);
      return;
    }
    if (node.kind === 'file') {
      this.blocks.delete(node);
      node.data.store.release(node.data);
    } else if (node.kind === 'dir') {
      // Iteratively: a hostile tree can be two thousand levels deep.
      const stack: DirNode[] = [node];
      for (let d = stack.pop(); d; d = stack.pop()) {
        for (const child of d.entries.values()) {
          if (child.kind === 'dir') stack.push(child);
          else this.detach(child);
        }
      }
    }
  }

  /** Counts the names of an adopted tree by identity. */
  private countNames(): void {
    const seen = new Set<Node>([this.root]);
    const stack: DirNode[] = [this.root];
    for (let d = stack.pop(); d; d = stack.pop()) {
      for (const [name, child] of d.entries) {
        this.entryTotal++;
        this.nameByteTotal += name.length + (child.kind === 'symlink' ? child.target.length : 0);
        if (!seen.has(child)) {
          seen.add(child);
          if (child.kind === 'dir') stack.push(child);
        } else if (child.kind === 'dir') throw new Error('a directory of the adopted tree has two names');
        else this.names.set(child, this.nameCount(child) + 1);
      }
    }
  }
}
