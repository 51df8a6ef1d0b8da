// Undoes what Docker's container "init layer" puts over an image when img2vm reads it as a container export:
// the image's own /etc/hostname, /etc/hosts and /etc/resolv.conf come back (read from its overlay2 layer
// directories), and the mount points Docker adds where the image has none go away.
import { constants, type Stats } from 'node:fs';
import { lstat, open, readlink, stat, type FileHandle } from 'node:fs/promises';
import { at as atFd } from '../../rootfs/inroot.js';
import type { RootTree } from '../../rootfs/tree-edit.js';
import { binPath, splitPath } from '../../rootfs/tree-path.js';
import type { BinName as BinPath } from '../../rootfs/tree.js';
import type { EventSink } from '../../core/events.js';
import type { ImageInspect } from '../docker-api.js';

/** What Docker's init layer creates in every container (daemon/initlayer), shadowing the image. */
export const INIT_LAYER_PATHS = [
  '/.dockerenv',
  '/etc/hostname',
  '/etc/hosts',
  '/etc/resolv.conf',
  '/etc/mtab',
  '/dev/console',
];
/** The directories it makes or changes on the way: the export shows them with the container's creation time. */
export const INIT_LAYER_DIRS = ['/dev/pts', '/dev/shm', '/dev', '/proc', '/sys', '/etc', '/'];

type Owned = { mode: number; uid: number; gid: number; mtimeMs: number };
type Entry =
  | (Owned & { kind: 'file'; content: Buffer })
  | (Owned & { kind: 'symlink'; target: BinPath })
  | (Owned & { kind: 'char' | 'block'; major: number; minor: number })
  | (Owned & { kind: 'dir' })
  | { kind: 'other' };

/** img2vm reads back only small configuration files; anything larger is left as the export has it. */
const MAX_FILE = 1 << 20;

/**
 * The path of `name` inside the directory open as dir (rootfs/inroot.ts): the lookup goes one component from a
 * directory already checked, and only the final component follows the call's own rules (lstat and O_NOFOLLOW never
 * follow it).
 */
function at(dir: FileHandle, name: BinPath): Buffer {
  return atFd(dir.fd, name);
}

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;
const isWhiteout = (st: Stats) => st.isCharacterDevice() && st.rdev === 0;

/**
 * The layer directory, opened as itself (the daemon's own path, trusted); undefined when it cannot be read, or
 * when /proc/self/fd does not lead back to it (no /proc), since then nothing could be looked up safely in it.
 */
async function openLayer(dir: string): Promise<FileHandle | undefined> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY).catch(() => undefined);
  if (!fh) return undefined;
  const [a, b] = await Promise.all([fh.stat(), stat(`/proc/self/fd/${fh.fd}`).catch(() => undefined)]);
  if (b && a.dev === b.dev && a.ino === b.ino) return fh;
  await fh.close();
  return undefined;
}

/**
 * What one layer directory holds at comps: 'absent' lets a lower layer answer; 'none' means the merged image has
 * nothing there (a whiteout, or a parent that is no directory). Each parent is opened O_DIRECTORY|O_NOFOLLOW
 * relative to the one before, so a symlink in the image is never followed, on the host or inside the layers: a
 * symlinked /etc means the image has no /etc/hosts (its files are wherever the link points, which the export
 * already holds), not the host's /etc/hosts.
 */
async function layerEntry(layer: FileHandle, comps: readonly BinPath[]): Promise<Entry | 'absent' | 'none'> {
  const opened: FileHandle[] = [];
  try {
    let dir = layer;
    for (const c of comps.slice(0, -1)) {
      const next = await open(at(dir, c), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(
        (e: unknown) => errno(e),
      );
      if (next === 'ENOENT') return 'absent';
      if (next === 'ELOOP' || next === 'ENOTDIR') return 'none';
      if (typeof next !== 'object') throw new Error(`opening ${c} in an image layer directory: ${String(next)}`);
      opened.push(next);
      dir = next;
    }
    if (comps.length === 0) {
      const st = await dir.stat();
      return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs, kind: 'dir' };
    }
    const name = at(dir, comps[comps.length - 1]!);
    const st = await lstat(name).catch((e: unknown) => {
      if (errno(e) === 'ENOENT') return undefined;
      throw e;
    });
    if (!st) return 'absent';
    // overlay2 marks a deleted entry with a 0:0 character device.
    if (isWhiteout(st)) return 'none';
    const owned = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs };
    if (st.isSymbolicLink())
      return { ...owned, kind: 'symlink', target: (await readlink(name, { encoding: 'buffer' })).toString('latin1') };
    if (st.isFile() && st.size <= MAX_FILE) {
      const content = await readSmallFile(name, st);
      return content ? { ...owned, kind: 'file', content } : { kind: 'other' };
    }
    // Linux's dev_t: major in bits 8-19 (and 32-43), minor in bits 0-7 and 20-31.
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      return {
        ...owned,
        kind: st.isCharacterDevice() ? 'char' : 'block',
        major: ((st.rdev >> 8) & 0xfff) | (Math.floor(st.rdev / 2 ** 32) & ~0xfff),
        minor: (st.rdev & 0xff) | ((st.rdev >> 12) & ~0xff),
      };
    }
    return st.isDirectory() ? { ...owned, kind: 'dir' } : { kind: 'other' };
  } finally {
    for (const fh of opened) await fh.close();
  }
}

/** The file lstat saw at name, read through an fd that is that same file (never a symlink, FIFO or device put there since), at most MAX_FILE bytes. */
async function readSmallFile(name: Buffer, seen: Stats): Promise<Buffer | undefined> {
  const fh = await open(name, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.dev !== seen.dev || st.ino !== seen.ino) return undefined;
    const buf = Buffer.alloc(MAX_FILE + 1);
    let n = 0;
    for (let r = 1; r > 0 && n < buf.length; n += r) r = (await fh.read(buf, n, buf.length - n, n)).bytesRead;
    return n <= MAX_FILE ? buf.subarray(0, n) : undefined;
  } finally {
    await fh.close();
  }
}

/** The image's own entry at path, looked up through its overlay2 layer directories top down as overlayfs would; null when the image has none. */
async function imageEntry(layers: FileHandle[], path: string): Promise<Entry | null> {
  const comps = splitPath(binPath(path));
  for (const layer of layers) {
    const e = await layerEntry(layer, comps);
    if (e === 'none') return null;
    if (e !== 'absent') return e;
  }
  return null;
}

const ts = (ms: number) => ({ sec: Math.floor(ms / 1000), nsec: Math.round((ms % 1000) * 1e6) });

/**
 * Returns the fix-up to run on the flattened export: exact where the layer directories can be read (overlay2,
 * as root), else Docker's empty additions are removed and a warning says which files of the image were lost.
 */
export function initLayerFixup(
  info: ImageInspect,
  sink?: EventSink,
): (tree: RootTree, o: { warnLost: boolean }) => Promise<void> {
  const g = info.GraphDriver;
  const dirs =
    g?.Name === 'overlay2' && g.Data?.UpperDir
      ? [g.Data.UpperDir, ...(g.Data.LowerDir ? g.Data.LowerDir.split(':') : [])]
      : [];
  return async (tree, o) => {
    const layers: FileHandle[] = [];
    try {
      for (const d of dirs) {
        const fh = await openLayer(d);
        if (!fh) break;
        layers.push(fh);
      }
      const readable = dirs.length > 0 && layers.length === dirs.length;
      const lost = readable ? [] : dropAdditions(tree);
      if (readable) await restore(tree, layers);
      if (lost.length && o.warnLost) {
        sink?.({
          type: 'log',
          level: 'warn',
          stage: 'rootfs',
          message: `the daemon's export replaces ${lost.join(', ')} with Docker's own (its layer directories are not readable here); for the image's exact files, convert docker-archive:FILE made by docker save`,
        });
      }
    } finally {
      for (const fh of layers) await fh.close();
    }
  };
}

/** Puts the image's own non-directory entry at path in place of what Docker has there. */
function put(tree: RootTree, path: string, e: Exclude<Entry, { kind: 'dir' | 'other' }>): void {
  const meta = { mode: e.mode, uid: e.uid, gid: e.gid, mtime: ts(e.mtimeMs) };
  if (e.kind === 'file') tree.writeFile(binPath(path), e.content, meta);
  else if (e.kind === 'symlink') tree.symlink(binPath(path), e.target, { ...meta, mode: 0o777 });
  else tree.put(binPath(path), { kind: e.kind, meta: tree.meta(meta), major: e.major, minor: e.minor });
}

/** The exact fix-up, from the layer directories: every path Docker's init layer touched gets the image's own entry, or none. */
async function restore(tree: RootTree, layers: FileHandle[]): Promise<void> {
  for (const path of INIT_LAYER_PATHS) {
    const e = await imageEntry(layers, path);
    if (e === null) tree.remove(binPath(path));
    else if (e.kind !== 'dir' && e.kind !== 'other') put(tree, path, e);
  }
  for (const path of INIT_LAYER_DIRS) {
    const n = tree.lookup(binPath(path), { followLast: false });
    if (n?.kind !== 'dir') continue;
    const e = await imageEntry(layers, path);
    if (e?.kind === 'dir')
      n.meta = {
        ...n.meta,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: ts(e.mtimeMs),
        atime: ts(e.mtimeMs),
        ctime: ts(e.mtimeMs),
      };
    else if (n.entries.size === 0) {
      // Docker's directory over what the image has there (nothing, or a symlink such as /etc -> /some/where): overlayfs
      // shows an upper directory alone, so the export holds nothing of the image here; the image's entry comes back.
      if (e && e.kind !== 'other') put(tree, path, e);
      else tree.remove(binPath(path));
    }
    // Docker's own with the image's files in it: at least not the container's creation time.
    else n.meta = { ...n.meta, mtime: { ...tree.epoch }, atime: { ...tree.epoch }, ctime: { ...tree.epoch } };
  }
}

/** Without the layer directories: Docker's additions are empty files and /etc/mtab -> /proc/mounts; drop those, and say what is unknown. */
function dropAdditions(tree: RootTree): string[] {
  const lost: string[] = [];
  for (const path of INIT_LAYER_PATHS) {
    const n = tree.lookup(binPath(path), { followLast: false });
    if (n?.kind === 'file' && n.size === 0) tree.remove(binPath(path));
    if (path === '/etc/hostname' || path === '/etc/hosts' || path === '/etc/resolv.conf') lost.push(path);
  }
  for (const path of INIT_LAYER_DIRS) {
    const n = tree.lookup(binPath(path), { followLast: false });
    if (n?.kind === 'dir')
      n.meta = { ...n.meta, mtime: { ...tree.epoch }, atime: { ...tree.epoch }, ctime: { ...tree.epoch } };
  }
  return lost;
}
