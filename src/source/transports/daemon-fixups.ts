// Undoes what Docker's container "init layer" puts over an image when img2vm reads it as a container export:
// the image's own /etc/hostname, /etc/hosts and /etc/resolv.conf come back (read from its overlay2 layer
// directories), and the mount points Docker adds where the image has none go away.
import { lstat, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { RootTree } from '../../rootfs/tree-edit.js';
import { binPath } from '../../rootfs/tree-path.js';
import type { EventSink } from '../../core/events.js';
import type { ImageInspect } from '../docker-api.js';

/** What Docker's init layer creates in every container (daemon/initlayer), shadowing the image. */
export const INIT_LAYER_PATHS = ['/.dockerenv', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/etc/mtab', '/dev/console'];
/** The directories it makes or changes on the way: the export shows them with the container's creation time. */
export const INIT_LAYER_DIRS = ['/dev/pts', '/dev/shm', '/dev', '/proc', '/sys', '/etc', '/'];

type Owned = { mode: number; uid: number; gid: number; mtimeMs: number };
type Entry =
  | (Owned & { kind: 'file'; content: Buffer })
  | (Owned & { kind: 'symlink'; target: string })
  | (Owned & { kind: 'char' | 'block'; major: number; minor: number })
  | (Owned & { kind: 'dir' })
  | { kind: 'other' };

/** The image's own entry at path, from its overlay2 layer directories top down; null when the image has none. */
async function imageEntry(dirs: string[], path: string): Promise<Entry | null> {
  for (const d of dirs) {
    const st = await lstat(join(d, path)).catch(() => undefined);
    if (!st) continue;
    // overlay2 marks a deleted entry with a 0:0 character device.
    if (st.isCharacterDevice() && st.rdev === 0) return null;
    const owned = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs };
    if (st.isSymbolicLink()) return { ...owned, kind: 'symlink', target: await readlink(join(d, path)) };
    if (st.isFile() && st.size <= 1 << 20) return { ...owned, kind: 'file', content: await readFile(join(d, path)) };
    // Linux's dev_t: major in bits 8-19 (and 32-43), minor in bits 0-7 and 20-31.
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      return { ...owned, kind: st.isCharacterDevice() ? 'char' : 'block', major: ((st.rdev >> 8) & 0xfff) | (Math.floor(st.rdev / 2 ** 32) & ~0xfff), minor: (st.rdev & 0xff) | ((st.rdev >> 12) & ~0xff) };
    }
    return st.isDirectory() ? { ...owned, kind: 'dir' } : { kind: 'other' };
  }
  return null;
}

const ts = (ms: number) => ({ sec: Math.floor(ms / 1000), nsec: Math.round((ms % 1000) * 1e6) });

/**
 * Returns the fix-up to run on the flattened export: exact where the layer directories can be read (overlay2,
 * as root), else Docker's empty additions are removed and a warning says which files of the image were lost.
 */
export function initLayerFixup(info: ImageInspect, sink?: EventSink): (tree: RootTree, o: { warnLost: boolean }) => Promise<void> {
  const g = info.GraphDriver;
  const dirs = g?.Name === 'overlay2' && g.Data?.UpperDir ? [g.Data.UpperDir, ...(g.Data.LowerDir ? g.Data.LowerDir.split(':') : [])] : [];
  return async (tree, o) => {
    const readable = dirs.length > 0 && (await lstat(dirs[0]!).then(() => true, () => false));
    const lost: string[] = [];
    for (const path of INIT_LAYER_PATHS) {
      if (!readable) {
        const n = tree.lookup(binPath(path), { followLast: false });
        // Docker's additions are empty files and /etc/mtab -> /proc/mounts; drop those, and say what is unknown.
        if (n?.kind === 'file' && n.size === 0) tree.remove(binPath(path));
        if (path === '/etc/hostname' || path === '/etc/hosts' || path === '/etc/resolv.conf') lost.push(path);
        continue;
      }
      const e = await imageEntry(dirs, path);
      if (e === null) tree.remove(binPath(path));
      else if (e.kind === 'file') tree.writeFile(binPath(path), e.content, { mode: e.mode, uid: e.uid, gid: e.gid, mtime: ts(e.mtimeMs) });
      else if (e.kind === 'symlink') tree.symlink(binPath(path), binPath(e.target), { mode: 0o777, uid: e.uid, gid: e.gid, mtime: ts(e.mtimeMs) });
      else if (e.kind === 'char' || e.kind === 'block') tree.put(binPath(path), { kind: e.kind, meta: tree.meta({ mode: e.mode, uid: e.uid, gid: e.gid, mtime: ts(e.mtimeMs) }), major: e.major, minor: e.minor });
    }
    for (const path of INIT_LAYER_DIRS) {
      const n = tree.lookup(binPath(path), { followLast: false });
      if (n?.kind !== 'dir') continue;
      const e = readable ? await imageEntry(dirs, path) : undefined;
      if (e?.kind === 'dir') n.meta = { ...n.meta, mode: e.mode, uid: e.uid, gid: e.gid, mtime: ts(e.mtimeMs), atime: ts(e.mtimeMs), ctime: ts(e.mtimeMs) };
      else if (readable && n.entries.size === 0) tree.remove(binPath(path));
      // Unknown, or Docker's own with the image's files in it: at least not the container's creation time.
      else n.meta = { ...n.meta, mtime: { ...tree.epoch }, atime: { ...tree.epoch }, ctime: { ...tree.epoch } };
    }
    if (lost.length && o.warnLost) {
      sink?.({
        type: 'log',
        level: 'warn',
        stage: 'rootfs',
        message: `the daemon's export replaces ${lost.join(', ')} with Docker's own (its layer directories are not readable here); for the image's exact files, convert docker-archive:FILE made by docker save`,
      });
    }
  };
}
