// Resolves archive paths inside the staging root with chroot semantics, so no layer entry can reach anything outside it.
import { lstatSync, mkdirSync, readlinkSync, type Stats } from 'node:fs';
import { Img2vmError } from '../core/errors.js';
import { MAX_SYMLINKS, NAME_MAX, PATH_MAX } from './limits.js';

/**
 * Paths are handled as "binary strings" (one char per byte, latin1) so that names which are not
 * valid UTF-8 survive, and converted to Buffers for every fs call.
 */
export type BinPath = string;

export { MAX_SYMLINKS, NAME_MAX, PATH_MAX } from './limits.js';

const HINT = 'the image contains an entry that cannot exist on a Linux file system; rebuild the image without it';

export function fsPath(p: BinPath): Buffer {
  return Buffer.from(p, 'latin1');
}

/** For messages: the bytes shown as UTF-8 (invalid sequences become U+FFFD). */
export function display(p: BinPath): string {
  return Buffer.from(p, 'latin1').toString('utf8');
}

function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

export function toBin(s: string): BinPath {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/**
 * Splits an archive path into components, dropping '', '.' and leading slashes; '..' is kept for the
 * resolver. With whiteoutPrefix, a final component that starts with it is a whiteout (never made):
 * the length of the name it hides is left to the caller.
 */
export function splitArchivePath(p: BinPath, whiteoutPrefix?: string): string[] {
  const out: string[] = [];
  const parts = p.split('/');
  let lastIdx = parts.length - 1;
  while (lastIdx >= 0 && (parts[lastIdx] === '' || parts[lastIdx] === '.')) lastIdx--;
  for (let i = 0; i <= lastIdx; i++) {
    const c = parts[i]!;
    if (c === '' || c === '.') continue;
    const whiteout = i === lastIdx && whiteoutPrefix !== undefined && c.startsWith(whiteoutPrefix);
    if (c.length > NAME_MAX && !whiteout) {
      throw new Img2vmError(
        'badImage',
        `layer entry "${clip(display(p))}" has a name component of ${c.length} bytes; Linux allows at most ${NAME_MAX}`,
        HINT,
      );
    }
    if (c.includes('\0')) throw new Img2vmError('badImage', `layer entry "${display(p)}" contains a NUL byte`, HINT);
    out.push(c);
  }
  return out;
}

export function lstatOpt(abs: BinPath): Stats | undefined {
  return lstatSync(fsPath(abs), { throwIfNoEntry: false });
}

export type Resolved =
  | { ok: true; /** real directory, relative to the root ('' = the root) */ parent: BinPath; /** null: the path names that directory itself */ name: string | null }
  | { ok: false; reason: 'missing' | 'notDir'; at: BinPath };

export class RootResolver {
  /** root: absolute, symlink-free path of the staging root, as a binary string. */
  constructor(readonly root: BinPath) {}

  abs(rel: BinPath): BinPath {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  /**
   * Walks comps from the root like the kernel would inside a chroot: '..' stops at the root, a
   * symlink met as an intermediate component is followed inside the root (absolute targets
   * re-rooted), the final component is never followed. With create, missing intermediate
   * directories are made (0755, like docker); otherwise a missing one ends the lookup.
   * Every component of the returned parent has been seen by lstat as a real directory, so the
   * kernel resolves root/parent/name to the same place.
   */
  resolve(comps: readonly string[], create: boolean): Resolved {
    const stack: string[] = [];
    const queue = comps.slice().reverse(); // popped from the end; the original final stays at index 0
    let links = 0;
    while (queue.length > 0) {
      const c = queue.pop()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        stack.pop();
        continue;
      }
      if (queue.length === 0) return { ok: true, parent: stack.join('/'), name: c };
      const rel = stack.length ? `${stack.join('/')}/${c}` : c;
      const abs = this.checkedAbs(rel);
      const st = lstatOpt(abs);
      if (!st) {
        if (!create) return { ok: false, reason: 'missing', at: rel };
        mkdirSync(fsPath(abs), 0o755);
        stack.push(c);
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) {
          throw new Img2vmError(
            'badImage',
            `too many levels of symbolic links resolving layer entry "${display(comps.join('/'))}" (at "${display(rel)}")`,
            'the image contains a symlink loop on the path of one of its files',
          );
        }
        const target = readlinkSync(fsPath(abs), { encoding: 'buffer' }).toString('latin1');
        if (target.startsWith('/')) stack.length = 0;
        const tc = target.split('/');
        for (let i = tc.length - 1; i >= 0; i--) queue.push(tc[i]!);
        continue;
      }
      if (!st.isDirectory()) return { ok: false, reason: 'notDir', at: rel };
      stack.push(c);
    }
    return { ok: true, parent: stack.join('/'), name: null };
  }

  /**
   * The real path (relative to the root) that comps names, as the kernel would resolve it inside a chroot; the
   * final component is followed too when followLast. From the first component that does not exist on, the rest
   * is taken literally ('..' included), so the answer is where the entry would be created.
   */
  realPath(comps: readonly string[], followLast: boolean): BinPath {
    const stack: string[] = [];
    const queue = comps.filter((c) => c !== '' && c !== '.').reverse();
    let links = 0;
    let missingAt = -1; // stack depth at which the walk left the existing tree
    while (queue.length > 0) {
      const c = queue.pop()!;
      if (c === '..') {
        stack.pop();
        if (missingAt >= 0 && stack.length < missingAt) missingAt = -1;
        continue;
      }
      const rel = stack.length ? `${stack.join('/')}/${c}` : c;
      if (missingAt < 0) {
        const st = lstatOpt(this.checkedAbs(rel));
        if (!st) missingAt = stack.length;
        else if (st.isSymbolicLink() && (queue.length > 0 || followLast)) {
          if (++links > MAX_SYMLINKS) {
            throw new Img2vmError('badImage', `too many symlinks resolving /${display(comps.join('/'))} in the image`, 'the image has a symlink loop');
          }
          const target = readlinkSync(fsPath(this.abs(rel)), { encoding: 'buffer' }).toString('latin1');
          if (target.startsWith('/')) stack.length = 0;
          const tc = target.split('/').filter((x) => x !== '' && x !== '.');
          for (let i = tc.length - 1; i >= 0; i--) queue.push(tc[i]!);
          continue;
        }
      }
      stack.push(c);
    }
    return stack.join('/');
  }

  /** The absolute path of rel, refusing paths the kernel would reject as too long. */
  checkedAbs(rel: BinPath): BinPath {
    const abs = this.abs(rel);
    if (abs.length >= PATH_MAX) {
      throw new Img2vmError(
        'badImage',
        `layer entry path "${clip(display(rel))}" is too long (${rel.length} bytes under the staging directory; Linux allows ${PATH_MAX - 1} in all)`,
        'use a shorter TMPDIR for the staging directory, or rebuild the image without such deep paths',
      );
    }
    return abs;
  }
}

export function joinRel(parent: BinPath, name: string): BinPath {
  return parent === '' ? name : `${parent}/${name}`;
}
