// File-system helpers of the store: a tree's size, fsync before a rename, and small records replaced by rename.
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, readlink, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ownerTag } from '../core/leftovers.js';

/** Apparent bytes of a tree (hard links counted once). */
export async function treeBytes(dir: string): Promise<number> {
  const seen = new Set<string>();
  let n = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const st = await lstat(p).catch(() => undefined);
        if (!st || seen.has(`${st.dev}:${st.ino}`)) continue;
        seen.add(`${st.dev}:${st.ino}`);
        n += st.size;
      }
    }
  };
  await walk(dir);
  return n;
}

const SYNC_PARALLEL = 32;

/**
 * fsyncs a file, or every file and directory of a tree, so a rename after it never publishes bytes still in flight.
 * Many at once: the file system commits concurrent fsyncs together (one at a time, a kernel's 2,000 modules took
 * seconds longer).
 */
export async function syncTree(p: string): Promise<void> {
  const files: string[] = [];
  const dirs: string[] = [];
  const walk = async (q: string): Promise<void> => {
    const st = await lstat(q);
    if (st.isFile()) files.push(q);
    else if (st.isDirectory()) {
      for (const e of await readdir(q)) await walk(join(q, e));
      dirs.push(q);
    }
  };
  await walk(p);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const fh = await open(files[next++]!, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(SYNC_PARALLEL, files.length) }, worker));
  for (const d of dirs) await syncDir(d);
}

export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY).catch(() => undefined);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    /* some file systems cannot fsync a directory; the rename is still atomic */
  } finally {
    await fh.close();
  }
}

/** Replaces a small record beside the store (a tag's digest, a kernel index) by rename, so readers see old or new. */
export async function writeRecord(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = join(dirname(path), `.${basename(path)}.${ownerTag()}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}

/**
 * A SHA-256 naming the content of files and trees: each file by its place (the index of the root it was given as,
 * and its path below it, so where the tree sits does not count) and bytes, in name order; a symlink by its target;
 * a missing root as absent. For keys that depend on host files (boot loader modules, img2vm's code).
 */
export async function hashPaths(roots: readonly string[], o: { only?: RegExp } = {}): Promise<string> {
  const h = createHash('sha256');
  const walk = async (i: number, p: string, rel: string): Promise<void> => {
    const st = await lstat(p).catch(() => undefined);
    if (!st) h.update(`absent ${i}:${rel}\n`);
    else if (st.isSymbolicLink()) h.update(`link ${i}:${rel} ${await readlink(p)}\n`);
    else if (st.isDirectory()) {
      for (const e of (await readdir(p)).sort()) await walk(i, join(p, e), rel ? `${rel}/${e}` : e);
    } else if (st.isFile() && (!o.only || o.only.test(p)))
      h.update(
        `file ${i}:${rel} ${createHash('sha256')
          .update(await readFile(p))
          .digest('hex')}\n`,
      );
  };
  for (const [i, p] of roots.entries()) await walk(i, p, '');
  return h.digest('hex');
}
