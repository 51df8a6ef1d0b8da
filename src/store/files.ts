// File-system helpers of the store: a tree's size, fsync before a rename, and small records replaced by rename.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
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
