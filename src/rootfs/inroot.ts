// Reading and writing img2vm's own files inside a staged root through the one in-root resolver (safepath.ts),
// so nothing img2vm writes into the guest can be redirected outside it by the image's symlinks.
import { chmodSync, chownSync, cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { GuestFile } from '../core/plan.js';
import { display, fsPath, joinRel, lstatOpt, RootResolver, splitArchivePath, toBin, type BinPath } from './safepath.js';

function resolverFor(root: string): RootResolver {
  return new RootResolver(toBin(realpathSync(root)));
}

function comps(path: string): string[] {
  return splitArchivePath(toBin(path));
}

/** The host path of `path` inside root: symlinks on the way are followed inside root, the last one only with followLast. */
export function resolveInRoot(root: string, path: string, followLast = false): string {
  const r = resolverFor(root);
  return display(r.abs(r.realPath(comps(path), followLast)));
}

function notDir(at: BinPath): Img2vmError {
  return new Img2vmError('badImage', `/${display(at)} in the image is not a directory`, 'the image layout is broken');
}

/** Resolves the parent of path (creating missing directories 0755), and the final name, which is never followed. */
function parentOf(r: RootResolver, path: string): { rel: BinPath; abs: BinPath } {
  const c = comps(path);
  if (c.length === 0) throw new Error(`no file name in ${path}`);
  const res = r.resolve(c, true);
  if (!res.ok) throw notDir(res.at);
  if (res.name === null) throw new Img2vmError('badImage', `/${path} in the image is a directory`, 'the image layout is broken');
  const rel = joinRel(res.parent, res.name);
  return { rel, abs: r.checkedAbs(rel) };
}

/** Writes a file inside root owned by root, replacing whatever entry was there (a symlink is replaced, never followed). */
export function writeInRoot(root: string, path: string, content: string | Buffer, mode = 0o644, owner: { uid: number; gid: number } = { uid: 0, gid: 0 }): void {
  const { abs } = parentOf(resolverFor(root), path);
  // Unlink first: writing through an existing hard link would change the other names too.
  if (lstatOpt(abs)) rmSync(fsPath(abs), { recursive: true, force: true });
  writeFileSync(fsPath(abs), content, { mode, flag: 'wx' });
  chownSync(fsPath(abs), owner.uid, owner.gid);
  chmodSync(fsPath(abs), mode);
}

/** Makes a symlink inside root, replacing whatever entry was there. */
export function symlinkInRoot(root: string, path: string, target: string): void {
  const { abs } = parentOf(resolverFor(root), path);
  if (lstatOpt(abs)) rmSync(fsPath(abs), { recursive: true, force: true });
  symlinkSync(target, fsPath(abs));
}

/** Removes an entry inside root (never anything a symlink on the way points to outside it). */
export function removeInRoot(root: string, path: string): void {
  const r = resolverFor(root);
  const res = r.resolve(comps(path), false);
  if (!res.ok || res.name === null) return;
  rmSync(fsPath(r.checkedAbs(joinRel(res.parent, res.name))), { recursive: true, force: true });
}

/** Removes the entries of a directory inside root whose names match a pattern (ssh_host_*); nothing if it is missing. */
export function removeMatchingInRoot(root: string, dir: string, pattern: string): void {
  const r = resolverFor(root);
  const res = r.resolve([...comps(dir), '.'], false);
  if (!res.ok) return;
  const abs = r.abs(res.parent);
  const re = globRe(pattern);
  for (const name of readdirSync(fsPath(abs), { encoding: 'buffer' })) {
    const n = name.toString('latin1');
    if (re.test(n)) rmSync(fsPath(r.checkedAbs(joinRel(res.parent, n))), { recursive: true, force: true });
  }
}

function globRe(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/** Makes the directory path (and its parents) inside root, following symlinks inside root; returns its host path. */
export function mkdirInRoot(root: string, path: string): string {
  const r = resolverFor(root);
  const res = r.resolve([...comps(path), '.'], true);
  if (!res.ok) throw notDir(res.at);
  return display(r.abs(res.parent));
}

/**
 * A directory inside root that img2vm fills itself (GRUB's modules): whatever the image had at that path is
 * removed first, so no symlink planted there can redirect the copy outside the root.
 */
export function freshDirInRoot(root: string, path: string): string {
  const r = resolverFor(root);
  const { abs } = parentOf(r, path);
  rmSync(fsPath(abs), { recursive: true, force: true });
  mkdirSync(fsPath(abs), 0o755);
  return display(abs);
}

/** Copies the regular files of a host directory whose names match one of the patterns ("*.mod") into a fresh directory. */
export function copyHostFilesInRoot(root: string, path: string, hostDir: string, patterns: string[]): void {
  const dest = freshDirInRoot(root, path);
  const res = patterns.map(globRe);
  for (const name of readdirSync(hostDir).sort()) {
    if (!res.some((re) => re.test(name))) continue;
    if (!lstatSync(join(hostDir, name)).isFile()) continue;
    cpSync(join(hostDir, name), join(dest, name));
  }
}

/**
 * Copies a whole host tree (a kernel's modules) into a fresh directory inside root: directories and regular files
 * only, owned by root, nothing of the host's symlinks or special files.
 */
export function copyHostTreeInRoot(root: string, path: string, hostDir: string): void {
  const dest = freshDirInRoot(root, path);
  const walk = (from: string, to: string) => {
    for (const name of readdirSync(from).sort()) {
      const st = lstatSync(join(from, name));
      if (st.isDirectory()) {
        mkdirSync(join(to, name), 0o755);
        walk(join(from, name), join(to, name));
      } else if (st.isFile()) {
        cpSync(join(from, name), join(to, name));
        chmodSync(join(to, name), 0o644);
      }
    }
  };
  walk(hostDir, dest);
}

/** Reads a regular file inside root; undefined when it is missing or not a regular file. */
export function readInRoot(root: string, path: string): string | undefined {
  const p = resolveInRoot(root, path, true);
  const st = lstatOpt(toBin(p));
  if (!st?.isFile()) return undefined;
  return readFileSync(p, 'utf8');
}

/** Moves the real directory path names (inside root) to dest on the host, leaving an empty directory in its place. */
export function moveDirOutOfRoot(root: string, path: string, dest: string): void {
  const real = resolveInRoot(root, path, true);
  const st = lstatOpt(toBin(real));
  if (real === realpathSync(root) || !st?.isDirectory()) {
    throw new Img2vmError('badImage', `the image's /${path} is not a directory of its own`, `convert without --${path}-partition`);
  }
  renameSync(real, dest);
  // The mount point replaces whatever named the directory (a symlink to it included).
  freshDirInRoot(root, path);
}

/** Carries out planned guest files (all but the ESP's) in order; `edit` entries go to the caller, who knows the secrets. */
export function writeGuestFiles(root: string, files: readonly GuestFile[], edit: (f: GuestFile) => void = () => {}, workDir?: string): void {
  for (const f of files) {
    if (f.fs === 'esp') continue;
    const path = f.path.replace(/^\/+/, '');
    switch (f.kind) {
      case 'file':
        if (f.from !== undefined) {
          const src = f.from.startsWith('work:') ? join(workDir ?? '', f.from.slice(5)) : f.from;
          writeInRoot(root, path, readFileSync(src), f.mode ?? 0o644);
        } else if (f.content === undefined) throw new Error(`guest file ${f.path} has no content yet`);
        else writeInRoot(root, path, f.content, f.mode ?? 0o644);
        break;
      case 'dir':
        mkdirInRoot(root, path);
        break;
      case 'symlink':
        symlinkInRoot(root, path, f.content ?? '');
        break;
      case 'remove':
        if (f.filter) removeMatchingInRoot(root, path, f.filter);
        else removeInRoot(root, path);
        break;
      case 'copy':
        if (f.filter === '**') copyHostTreeInRoot(root, path, f.from!);
        else copyHostFilesInRoot(root, path, f.from!, (f.filter ?? '*').split(/\s+/));
        break;
      case 'edit':
        edit(f);
        break;
    }
  }
}
