// The one lock shared by concurrent img2vm processes (O_EXCL create, owner pid + heartbeat, stale locks broken), so each thing is fetched or built once.
//
// Node has no flock(). The lock only saves duplicate work: the store's integrity never depends on it, because
// entries appear only by rename() of a complete, verified temp. That is why the rare race when two waiters break
// the same stale lock at the same instant is tolerable.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { mkdir, open, readFile, stat, unlink, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pidAlive } from './leftovers.js';

interface Owner {
  pid: number;
  host: string;
  nonce: string;
}

/** A lock whose heartbeat is older than this is abandoned (its holder hung, or lives on another host). */
export const LOCK_STALE_MS = 60_000;

export interface LockOptions {
  signal?: AbortSignal;
  staleMs?: number;
  pollMs?: number;
  /** Called once when the lock is busy, with the holder's pid. */
  onWait?: (pid: number) => void;
}

export interface HeldLock {
  release(): Promise<void>;
}

async function readOwner(path: string): Promise<Owner | undefined> {
  try {
    const o = JSON.parse(await readFile(path, 'utf8')) as Partial<Owner>;
    if (typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.nonce === 'string') return o as Owner;
  } catch {
    /* being written, or gone */
  }
  return undefined;
}

/**
 * The pid holding the lock at path, while its holder lives: on this host its process must exist, elsewhere (which
 * cannot be asked) its heartbeat must be fresh. A lock still being written counts as live while fresh (pid 0).
 */
export async function lockHolder(path: string, staleMs = LOCK_STALE_MS): Promise<number | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return undefined;
  const owner = await readOwner(path);
  const silent = Date.now() - st.mtimeMs > staleMs;
  if (owner && owner.host === hostname()) return pidAlive(owner.pid) && !silent ? owner.pid : undefined;
  return silent ? undefined : (owner?.pid ?? 0);
}

export async function acquireLock(path: string, o: LockOptions = {}): Promise<HeldLock> {
  const staleMs = o.staleMs ?? LOCK_STALE_MS;
  const me: Owner = { pid: process.pid, host: hostname(), nonce: randomBytes(8).toString('hex') };
  await mkdir(dirname(path), { recursive: true });
  let told = false;
  for (;;) {
    if (o.signal?.aborted) throw o.signal.reason;
    try {
      const fh = await open(path, 'wx', 0o644);
      try {
        await fh.writeFile(JSON.stringify(me));
      } finally {
        await fh.close();
      }
      return held(path, me, staleMs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = await readOwner(path);
    const st = await stat(path).catch(() => undefined);
    if (!st) continue;
    const dead = owner ? owner.host === me.host && !pidAlive(owner.pid) : false;
    const silent = Date.now() - st.mtimeMs > staleMs;
    if (dead || silent) {
      // Unlink only the lock judged stale, not one a faster waiter has created since.
      const again = await readOwner(path);
      if (again?.nonce === owner?.nonce) await unlink(path).catch(() => undefined);
      continue;
    }
    if (!told && owner) {
      told = true;
      o.onWait?.(owner.pid);
    }
    await new Promise((r) => setTimeout(r, o.pollMs ?? 200));
  }
}

function held(path: string, me: Owner, staleMs: number): HeldLock {
  const beat = setInterval(
    () => {
      const t = new Date();
      void utimes(path, t, t).catch(() => undefined);
    },
    Math.max(50, Math.floor(staleMs / 4)),
  );
  beat.unref();
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      clearInterval(beat);
      if ((await readOwner(path))?.nonce === me.nonce) await unlink(path).catch(() => undefined);
    },
  };
}
