// The one in-root resolver for host directories: reads and writes inside a root on the host with chroot semantics, one component at a time from an open directory, so the image's symlinks never lead outside it.
//
// The runc builder's steps run the image's own programs in its bundle root, which may leave any
// symlink anywhere in it; img2vm then reads /etc/passwd there, makes a WORKDIR and copies template
// files in. Node has no openat(): a path under /proc/self/fd/N starts at the directory open as N
// itself, whatever has been renamed on the way to it since, so every lookup goes one component from
// a directory already opened O_NOFOLLOW, and only img2vm's own paths (the root) are ever walked whole.
import {
  closeSync,
  constants as C,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  readSync,
  rmSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { Img2vmError } from '../core/errors.js';
import { MAX_SYMLINKS, NAME_MAX } from './limits.js';
import { binPath, showPath, splitPath } from './tree-path.js';
import type { BinName } from './tree.js';

/** The path of name inside the directory open as fd: the kernel starts the lookup at that directory itself. */
export function at(fd: number, name: BinName): Buffer {
  return Buffer.concat([Buffer.from(`/proc/self/fd/${fd}/`), Buffer.from(name, 'latin1')]);
}

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | null)?.code;

/** lstat of name in the directory open as fd; undefined when there is nothing. */
export function lstatAt(fd: number, name: BinName): Stats | undefined {
  return lstatSync(at(fd, name), { throwIfNoEntry: false });
}

/** Opens name in the directory open as fd as a directory, never through a symlink; undefined when it is not one (or is gone). */
export function openDirAt(fd: number, name: BinName): number | undefined {
  try {
    return openSync(at(fd, name), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  } catch (e) {
    const code = errno(e);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return undefined;
    throw e;
  }
}

/** Opens a directory img2vm names itself (its own, trusted path), to resolve inside it. */
export function openRoot(root: string): number {
  return openSync(root, C.O_RDONLY | C.O_DIRECTORY);
}

function loop(path: string): Img2vmError {
  return new Img2vmError(
    'badImage',
    `too many levels of symbolic links resolving /${showPath(binPath(path))} in the image`,
    'the image has a symlink loop on that path',
  );
}

function notDir(path: string, at: BinName): Img2vmError {
  return new Img2vmError(
    'badImage',
    `cannot reach /${path.replace(/^\/+/, '')} in the image: /${showPath(at)} is not a directory`,
    'the image has a file where a directory is expected',
  );
}

/** Where a path leads: the directory that holds it, open, and the final name in it (null: the path names that directory). */
interface Found {
  dir: number;
  name: BinName | null;
  /** Closes dir, unless it is the root (which its opener closes). */
  close(): void;
}

/**
 * Resolves path inside the root open as rootFd as the kernel would inside a chroot there: '..' stops at the root,
 * symlinks are followed inside it (absolute ones from the root), at most 40 per lookup; the final component only
 * with followLast. With create, missing directories on the way are made 0755 (root's, as docker makes them). When a
 * directory on the way is missing (without create) or is no directory, says which (its real path).
 */
function resolve(
  rootFd: number,
  path: string,
  o: { followLast?: boolean; create?: boolean } = {},
): Found | { blocked: BinName } {
  /** Directories opened below the root, the innermost last, and their names. */
  const stack: number[] = [];
  const names: BinName[] = [];
  const top = (): number => stack[stack.length - 1] ?? rootFd;
  const release = (): void => {
    for (const fd of stack.splice(0)) closeSync(fd);
    names.length = 0;
  };
  const hand = (name: BinName | null): Found => {
    const dir = stack.pop();
    return { dir: dir ?? rootFd, name, close: () => dir !== undefined && closeSync(dir) };
  };
  const queue = splitPath(binPath(path)).reverse();
  let links = 0;
  try {
    while (queue.length > 0) {
      const c = queue.pop()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        const fd = stack.pop();
        if (fd !== undefined) closeSync(fd);
        names.pop();
        continue;
      }
      // Components of symlink targets are not checked by splitPath; the kernel would refuse such a name too.
      if (c.length > NAME_MAX)
        throw new Img2vmError(
          'badImage',
          `resolving /${showPath(binPath(path))} in the image meets a name of ${c.length} bytes; Linux allows at most ${NAME_MAX}`,
          'the image has a symlink no Linux file system can follow',
        );
      const last = queue.length === 0;
      if (last && !o.followLast) return hand(c);
      const st = lstatAt(top(), c);
      if (st?.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) throw loop(path);
        const target = readlinkSync(at(top(), c), { encoding: 'buffer' }).toString('latin1');
        if (target.startsWith('/')) release();
        const tc = target.split('/');
        for (let i = tc.length - 1; i >= 0; i--) queue.push(tc[i]!);
        continue;
      }
      if (last) return hand(c);
      if (!st && o.create) mkdirSync(at(top(), c), 0o755);
      const fd = st || o.create ? openDirAt(top(), c) : undefined;
      if (fd === undefined) return { blocked: [...names, c].join('/') };
      stack.push(fd);
      names.push(c);
    }
    return hand(null);
  } finally {
    release();
  }
}

/** Runs fn on what path leads to inside root (open only meanwhile); undefined when it leads nowhere. */
function inRoot<T>(
  root: string,
  path: string,
  o: { followLast?: boolean; create?: boolean },
  fn: (f: Found) => T,
  blocked?: (at: BinName) => T,
): T | undefined {
  const rootFd = openRoot(root);
  try {
    const f = resolve(rootFd, path, o);
    if ('blocked' in f) return blocked?.(f.blocked);
    try {
      return fn(f);
    } finally {
      f.close();
    }
  } finally {
    closeSync(rootFd);
  }
}

/** Whether path exists inside root (symlinks followed inside it, the final one too). */
export function existsInRoot(root: string, path: string): boolean {
  return (
    inRoot(root, path, { followLast: true }, (f) => f.name === null || lstatAt(f.dir, f.name) !== undefined) ?? false
  );
}

/** Removes the entry path names inside root (a directory with its tree; a final symlink itself, never what it points to). */
export function removeInRoot(root: string, path: string): void {
  inRoot(root, path, {}, (f) => {
    if (f.name !== null) rmSync(at(f.dir, f.name), { recursive: true, force: true });
  });
}

/** Makes the directory path and its parents inside root, following the image's symlinks inside it (as mkdir -p does). */
export function mkdirInRoot(root: string, path: string): void {
  inRoot(
    root,
    path,
    { create: true, followLast: true },
    (f) => {
      if (f.name === null) return;
      const st = lstatAt(f.dir, f.name);
      if (!st) mkdirSync(at(f.dir, f.name), 0o755);
      else if (!st.isDirectory()) throw notDir(path, binPath(path.replace(/^\/+/, '')));
    },
    (blockedAt) => {
      throw notDir(path, blockedAt);
    },
  );
}

/** More than this is no account database: a hostile image may put a huge file, a FIFO or a device there. */
const MAX_READ = 16 << 20;

/** A regular file's content inside root (symlinks followed inside it); undefined when it is missing or not a regular file. */
export function readInRoot(root: string, path: string): Buffer | undefined {
  return inRoot(root, path, { followLast: true }, (f) => {
    if (f.name === null) return undefined;
    let fd: number;
    try {
      // O_NONBLOCK: opening a FIFO the image put there must not wait for a writer.
      fd = openSync(at(f.dir, f.name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (e) {
      if (['ENOENT', 'ELOOP', 'ENXIO', 'EISDIR'].includes(errno(e) ?? '')) return undefined;
      throw e;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return undefined;
      if (st.size > MAX_READ) {
        throw new Img2vmError(
          'badImage',
          `/${path.replace(/^\/+/, '')} in the image is ${st.size} bytes; more than ${MAX_READ} is not read`,
          'check that the image file is what it should be',
        );
      }
      const buf = Buffer.alloc(st.size);
      let n = 0;
      for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, n);
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  });
}

/**
 * Writes a regular file inside root with the given mode, owned by owner (root by default), replacing whatever
 * entry was there (a symlink is replaced, never written through; a hard link is not written through either).
 * Missing directories on the way are made.
 */
export function writeInRoot(
  root: string,
  path: string,
  content: string | Uint8Array,
  mode = 0o644,
  owner: { uid: number; gid: number } = { uid: 0, gid: 0 },
): void {
  inRoot(
    root,
    path,
    { create: true },
    (f) => {
      if (f.name === null)
        throw new Img2vmError(
          'badImage',
          `cannot write /${path.replace(/^\/+/, '')} in the image: it names a directory`,
          'the image layout is broken',
        );
      const name = at(f.dir, f.name);
      rmSync(name, { recursive: true, force: true });
      const fd = openSync(name, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode & 0o7777);
      try {
        const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
        for (let n = 0; n < data.length;) n += writeSync(fd, data, n, data.length - n);
        // chown first: it clears setuid and setgid bits, which the mode then sets.
        fchownSync(fd, owner.uid, owner.gid);
        fchmodSync(fd, mode & 0o7777);
      } finally {
        closeSync(fd);
      }
    },
    (blockedAt) => {
      throw notDir(path, blockedAt);
    },
  );
}
