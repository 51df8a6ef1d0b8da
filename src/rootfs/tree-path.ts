// The one in-root path resolver: walks a flattened tree with chroot semantics, so no image path, symlink or hard link reaches outside it.
//
// Paths and names are binary strings (latin1, one char per byte) as everywhere in rootfs/. The
// rules are the kernel's inside a chroot: '..' stops at the root, symlink targets are looked up
// inside the tree (absolute ones from its root), at most 40 symlinks per lookup, a component is at
// most 255 bytes, and every entry must have an absolute path the kernel accepts (under 4096 bytes),
// so that tools inside the guest can reach it.
import { Img2vmError } from '../core/errors.js';
import { MAX_SYMLINKS, NAME_MAX, PATH_MAX } from './limits.js';
import { ownName, type BinName, type DirNode, type Node, type NodeMeta } from './tree.js';

export { MAX_SYMLINKS, NAME_MAX, PATH_MAX } from './limits.js';

const HINT = 'the image contains an entry that cannot exist on a Linux file system; rebuild the image without it';

/** For messages: the bytes shown as UTF-8 (invalid sequences become U+FFFD), clipped. */
export function showPath(p: BinName): string {
  const s = Buffer.from(p, 'latin1').toString('utf8');
  return s.length > 160 ? `${s.slice(0, 160)}…` : s;
}

/** A JavaScript (UTF-16) string as the binary string of its UTF-8 bytes. */
export function binPath(s: string): BinName {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function checkName(c: string, whole: BinName): void {
  if (c.length > NAME_MAX) {
    throw new Img2vmError(
      'badImage',
      `path "${showPath(whole)}" has a name component of ${c.length} bytes; Linux allows at most ${NAME_MAX}`,
      HINT,
    );
  }
  if (c.includes('\0')) throw new Img2vmError('badImage', `path "${showPath(whole)}" contains a NUL byte`, HINT);
}

/**
 * Splits a path into components, dropping '', '.' and leading slashes ('..' is kept for the
 * resolver). A path string the kernel would refuse (4096 bytes or more, a component over 255 bytes,
 * a NUL) is a badImage error.
 *
 * With whiteoutPrefix, a final component that starts with it is a whiteout, which is never made:
 * the limits apply to the path it hides (the prefix taken out), and the length of the name it hides
 * is left to the caller. Docker's and containerd's differs write '.wh.' + a 255-byte name.
 */
export function splitPath(p: BinName, whiteoutPrefix?: string): string[] {
  const out: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    out.push(c);
  }
  const n = out.length;
  const whiteout = whiteoutPrefix !== undefined && n > 0 && out[n - 1]!.startsWith(whiteoutPrefix);
  const len = whiteout ? p.length - whiteoutPrefix.length : p.length;
  if (len >= PATH_MAX) {
    throw new Img2vmError(
      'badImage',
      `path "${showPath(p)}" is ${len} bytes long; Linux allows at most ${PATH_MAX - 1}`,
      HINT,
    );
  }
  for (let i = 0; i < n; i++) {
    if (whiteout && i === n - 1) {
      if (out[i]!.includes('\0')) throw new Img2vmError('badImage', `path "${showPath(p)}" contains a NUL byte`, HINT);
    } else checkName(out[i]!, p);
  }
  return out;
}

export interface ResolveOptions {
  /** Follow a symlink met as the final component (for reading). Never set when the entry itself is to be replaced. */
  followLast?: boolean;
  /**
   * Makes missing intermediate directories (and those a followed symlink points to) with this
   * metadata, called once per directory. Without it a missing directory ends the lookup.
   */
  create?: () => NodeMeta;
  /** Called with each directory create() made, its parent and its name. */
  onCreate?: (dir: DirNode, parent: DirNode, name: BinName) => void;
}

export type Resolved =
  | {
      ok: true;
      /** The real directories walked, the root first; the last holds `name`. */
      dirs: DirNode[];
      /** Their names: dirs[i + 1] is dirs[i].entries.get(names[i]). */
      names: BinName[];
      /** The final component inside dirs' last, or null when the path names that directory itself ('', '/', 'a/..'). */
      name: BinName | null;
      /** What the path names now: undefined if name is free; with name null, the directory itself. */
      node: Node | undefined;
    }
  | {
      ok: false;
      /** missing: a directory on the way does not exist (create not given); notDir: a component is not a directory. */
      reason: 'missing' | 'notDir';
      /** The real path of that component, for messages. */
      at: BinName;
    };

function tooManyLinks(path: BinName, at: BinName): Img2vmError {
  return new Img2vmError(
    'badImage',
    `too many levels of symbolic links resolving "${showPath(path)}" (at "${showPath(at)}")`,
    'the image contains a symlink loop on the path of one of its files',
  );
}

function tooLong(path: BinName, at: BinName, len: number): Img2vmError {
  return new Img2vmError(
    'badImage',
    `path "${showPath(path)}" resolves to "/${showPath(at)}", ${len} bytes long; Linux allows at most ${PATH_MAX - 1}`,
    HINT,
  );
}

/**
 * Resolves path inside the tree as the kernel would inside a chroot at root. Every directory in the
 * result was found (or made) as a real directory, never through a symlink, so writing to
 * dirs.at(-1) under name cannot land anywhere else.
 */
export function resolvePath(root: DirNode, path: BinName, opts: ResolveOptions = {}): Resolved {
  return resolveComponents(root, splitPath(path), path, opts);
}

/** resolvePath for a path already split by splitPath (path is for messages only). */
export function resolveComponents(
  root: DirNode,
  comps: readonly string[],
  path: BinName,
  opts: ResolveOptions = {},
): Resolved {
  const dirs: DirNode[] = [root];
  const names: BinName[] = [];
  /** Bytes of "/" + names.join("/"), the real absolute path so far. */
  let len = 0;
  // Popped from the end; symlink targets are pushed back in reverse.
  const queue = comps.slice().reverse();
  let links = 0;
  const at = (c: string): BinName => (names.length ? `${names.join('/')}/${c}` : c);
  while (queue.length > 0) {
    const c = queue.pop()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (names.length > 0) {
        len -= names.pop()!.length + 1;
        dirs.pop();
      }
      continue;
    }
    checkName(c, path); // components coming from symlink targets are not checked by splitPath
    const dir = dirs[dirs.length - 1]!;
    if (len + 1 + c.length >= PATH_MAX) throw tooLong(path, at(c), len + 1 + c.length);
    const node = dir.entries.get(c);
    const last = queue.length === 0;
    if (node?.kind === 'symlink' && (!last || opts.followLast)) {
      if (++links > MAX_SYMLINKS) throw tooManyLinks(path, at(c));
      if (node.target.startsWith('/')) {
        dirs.length = 1;
        names.length = 0;
        len = 0;
      }
      const tc = node.target.split('/');
      for (let i = tc.length - 1; i >= 0; i--) queue.push(tc[i]!);
      continue;
    }
    if (last) return { ok: true, dirs, names, name: c, node };
    if (node === undefined) {
      if (!opts.create) return { ok: false, reason: 'missing', at: at(c) };
      const made: DirNode = { kind: 'dir', meta: opts.create(), entries: new Map() };
      const name = ownName(c);
      dir.entries.set(name, made);
      opts.onCreate?.(made, dir, name);
      dirs.push(made);
      names.push(c);
      len += 1 + c.length;
      continue;
    }
    if (node.kind !== 'dir') return { ok: false, reason: 'notDir', at: at(c) };
    dirs.push(node);
    names.push(c);
    len += 1 + c.length;
  }
  return { ok: true, dirs, names, name: null, node: dirs[dirs.length - 1] };
}

/** The real path of a resolution, without a leading slash ('' is the root). */
export function realPath(r: Extract<Resolved, { ok: true }>): BinName {
  const parts = r.name === null ? r.names : [...r.names, r.name];
  return parts.join('/');
}

/** What path names (following symlinks, the final one too, unless followLast is false), or undefined. */
export function lookup(root: DirNode, path: BinName, opts: { followLast?: boolean } = {}): Node | undefined {
  const r = resolvePath(root, path, { followLast: opts.followLast ?? true });
  return r.ok ? r.node : undefined;
}
