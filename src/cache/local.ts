// The parts of the cache img2vm keeps in its own directory: runc builds, registry blobs, kernels; each listed with how to remove it safely.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BuildCache, liveHolders } from '../build/build-cache.js';
import { KernelCache, TreeRecordSchema, type TreeRecord } from '../kernel/cache.js';
import { pidAlive } from '../kernel/lock.js';
import { isoOf, type Removable, type RemoveOutcome } from './entries.js';

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

async function mtimeOf(p: string): Promise<number | undefined> {
  return (await stat(p).catch(() => undefined))?.mtimeMs;
}

/** Moves a directory out of view at once, then deletes it. */
async function discardDir(dir: string, tmpParent: string): Promise<void> {
  await mkdir(tmpParent, { recursive: true });
  const gone = join(tmpParent, `${process.pid}-${randomBytes(6).toString('hex')}-gone`);
  try {
    await rename(dir, gone);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await rm(gone, { recursive: true, force: true });
}

function held(pids: number[]): string {
  return `in use by img2vm process ${pids.join(', ')}`;
}

/** The runc builder's layers. */
export async function runcBuilds(cache: BuildCache): Promise<Removable[]> {
  const out: Removable[] = [];
  for (const key of (await readdir(cache.runc).catch(() => [] as string[])).sort()) {
    const dir = cache.entryDir(key);
    const found = await cache.find(key);
    const bytes = await treeBytes(dir);
    const used = (await mtimeOf(join(dir, 'used'))) ?? (await mtimeOf(dir)) ?? 0;
    const pids = await liveHolders(dir);
    out.push({
      entry: {
        kind: 'guest-build',
        store: 'img2vm',
        name: `runc:${key.slice(0, 32)}`,
        detail: found ? `${found.record.label} (template ${found.record.template}, base ${found.record.base.slice(7, 19)})` : 'incomplete (an interrupted build or removal)',
        bytes,
        lastUsed: isoOf(used),
        busy: pids.length ? held(pids) : null,
        location: dir,
      },
      async remove(): Promise<RemoveOutcome> {
        const now = await liveHolders(dir);
        if (now.length) return { removed: false, why: held(now) };
        await cache.discard(key);
        return { removed: true, freed: bytes };
      },
    });
  }
  return out;
}

interface LockOwner {
  pid: number;
  host: string;
}

/** Pids holding the lock files in dir: the kernel cache's fetch locks (owner pid + heartbeat). */
async function liveLocks(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const p = join(dir, name);
    const st = await stat(p).catch(() => undefined);
    if (!st) continue;
    let o: Partial<LockOwner> = {};
    try {
      o = JSON.parse(await readFile(p, 'utf8')) as Partial<LockOwner>;
    } catch {
      /* being written: treat as live while fresh */
    }
    const alive = typeof o.pid === 'number' && o.host === hostname() ? pidAlive(o.pid) : Date.now() - st.mtimeMs < 60_000;
    if (alive) out.push(typeof o.pid === 'number' ? o.pid : 0);
  }
  return out;
}

/** Pids of writers with a blob in flight (.partial-<hex>-<pid>.<host tag>-<nonce>). */
async function liveBlobWriters(blobs: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir(blobs).catch(() => [] as string[])) {
    const m = /^\.partial-[0-9a-f]{64}-(\d+)[.-]/.exec(name);
    if (m && pidAlive(Number(m[1]))) out.push(Number(m[1]));
  }
  return out;
}

/**
 * Registry blobs. While any pull is under way none is removed: a pull writes the manifest first and reads it
 * back before its layers arrive.
 */
export async function registryBlobs(root: string): Promise<Removable[]> {
  const blobs = join(root, 'blobs', 'sha256');
  const writers = await liveBlobWriters(blobs);
  const out: Removable[] = [];
  for (const name of (await readdir(blobs).catch(() => [] as string[])).sort()) {
    if (!/^[0-9a-f]{64}$/.test(name)) continue;
    const p = join(blobs, name);
    const st = await stat(p).catch(() => undefined);
    if (!st?.isFile()) continue;
    out.push({
      entry: {
        kind: 'registry-blob',
        store: 'img2vm',
        name: `sha256:${name}`,
        detail: 'a layer, manifest or config pulled from a registry',
        bytes: st.size,
        lastUsed: isoOf(Math.max(st.atimeMs, st.mtimeMs)),
        busy: writers.length ? `a pull is under way (img2vm process ${writers.join(', ')})` : null,
        location: p,
      },
      async remove(): Promise<RemoveOutcome> {
        const w = await liveBlobWriters(blobs);
        if (w.length) return { removed: false, why: `a pull is under way (img2vm process ${w.join(', ')})` };
        await rm(p, { force: true });
        return { removed: true, freed: st.size };
      },
    });
  }
  return out;
}

/** Tag records whose manifest blob is gone point at nothing: they are dropped with it. */
export async function dropDanglingRefs(root: string): Promise<void> {
  const refs = join(root, 'refs');
  for (const name of await readdir(refs).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    try {
      const j = JSON.parse(await readFile(join(refs, name), 'utf8')) as { digest?: unknown };
      if (typeof j.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(j.digest)) continue;
      if (!(await stat(join(root, 'blobs', 'sha256', j.digest.slice(7))).catch(() => undefined))) await rm(join(refs, name), { force: true });
    } catch {
      /* unreadable: leave it to the blob cache */
    }
  }
}

/**
 * A tree's record, read without moving its access time (O_NOATIME: listing is not a use), and the tree's last
 * use: kernel.json and the kernel image are read on every use, so their access times say when.
 */
async function readKernelTree(dir: string): Promise<{ record: TreeRecord; used: number } | undefined> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(join(dir, 'kernel.json'), constants.O_RDONLY | constants.O_NOATIME);
    const r = TreeRecordSchema.safeParse(JSON.parse(await fh.readFile('utf8')));
    if (!r.success) return undefined;
    const st = await fh.stat();
    const k = await stat(join(dir, r.data.vmlinuz)).catch(() => undefined);
    if (!k?.isFile()) return undefined;
    return { record: r.data, used: Math.max(st.atimeMs, st.mtimeMs, k.atimeMs, k.mtimeMs) };
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}

/** Kernel trees. While a kernel fetch holds a lock none is removed (the fetch may be about to reuse one). */
export async function kernelTrees(kc: KernelCache): Promise<Removable[]> {
  const locked = await liveLocks(kc.locks);
  const busy = () => (locked.length ? `a kernel fetch is under way (img2vm process ${locked.join(', ')})` : null);
  const out: Removable[] = [];
  for (const name of (await readdir(kc.trees).catch(() => [] as string[])).sort()) {
    const dir = kc.treeDir(name);
    const tree = await readKernelTree(dir);
    if (!tree) continue;
    const { record, used } = tree;
    out.push({
      entry: {
        kind: 'kernel',
        store: 'img2vm',
        name: record.version,
        detail: record.origin,
        bytes: record.bytes,
        lastUsed: isoOf(used),
        busy: busy(),
        location: dir,
      },
      async remove(): Promise<RemoveOutcome> {
        const now = await liveLocks(kc.locks);
        if (now.length) return { removed: false, why: `a kernel fetch is under way (img2vm process ${now.join(', ')})` };
        await discardDir(dir, kc.tmp);
        return { removed: true, freed: record.bytes };
      },
    });
  }
  return out;
}

/** Index records that name a tree no longer there would send the next fetch to a missing directory: dropped. */
export async function dropDanglingKernelIndex(kc: KernelCache): Promise<void> {
  for (const name of await readdir(kc.index).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    const rec = await kc.readIndex(name.slice(0, -5));
    // stat, not a read: reading a tree's record would look like a use of it.
    if (rec && !(await stat(join(kc.treeDir(rec.tree), 'kernel.json')).catch(() => undefined))) await rm(join(kc.index, name), { force: true });
  }
}
