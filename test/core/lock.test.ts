// The cross-process lock: exclusive while held, waited for, and broken when its holder died or stopped its heartbeat.
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireLock, lockHolder } from '../../src/core/lock.js';

let env: { dir: string };
beforeEach(async () => {
  env = { dir: await mkdtemp(join(tmpdir(), 'img2vm-lock-')) };
});
afterEach(async () => {
  await rm(env.dir, { recursive: true, force: true });
});

describe('acquireLock', () => {
  it('lets one holder in at a time; the next one waits and is told who holds it', async () => {
    const path = join(env.dir, 'locks', 'k.lock');
    const first = await acquireLock(path);
    const waits: number[] = [];
    let second = false;
    const p = acquireLock(path, { pollMs: 10, onWait: (pid) => waits.push(pid) }).then((l) => {
      second = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(second).toBe(false);
    await first.release();
    const l = await p;
    expect(waits).toEqual([process.pid]);
    await l.release();
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('breaks the lock of a dead process on this host', async () => {
    const path = join(env.dir, 'k.lock');
    await writeFile(path, JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), nonce: 'x' }));
    await (await acquireLock(path, { pollMs: 10 })).release();
  });

  it('breaks a lock whose heartbeat stopped, wherever its holder lives', async () => {
    const path = join(env.dir, 'k.lock');
    await writeFile(path, JSON.stringify({ pid: process.pid, host: 'elsewhere', nonce: 'x' }));
    const old = new Date(Date.now() - 120_000);
    await utimes(path, old, old);
    await (await acquireLock(path, { pollMs: 10, staleMs: 60_000 })).release();
  });

  it("keeps a live holder's lock fresh, so it is not taken for stale", async () => {
    const path = join(env.dir, 'k.lock');
    const held = await acquireLock(path, { staleMs: 1000 });
    const old = new Date(0);
    await utimes(path, old, old);
    while ((await stat(path)).mtimeMs === 0) await new Promise((r) => setTimeout(r, 10));
    // A waiter with the same staleness sees a live lock and keeps waiting.
    let got = false;
    const waiter = acquireLock(path, { staleMs: 1000, pollMs: 10 }).then((l) => ((got = true), l));
    await new Promise((r) => setTimeout(r, 1500));
    expect(got).toBe(false);
    await held.release();
    await (await waiter).release();
  });

  it('stops waiting when the run is interrupted', async () => {
    const path = join(env.dir, 'k.lock');
    await mkdir(env.dir, { recursive: true });
    const held = await acquireLock(path);
    const ac = new AbortController();
    const p = acquireLock(path, { pollMs: 10, signal: ac.signal });
    ac.abort(new Error('SIGINT'));
    await expect(p).rejects.toThrow('SIGINT');
    await held.release();
  });

  it('names its live holder to a listing; a dead one, a silent one or no lock names none', async () => {
    const path = join(env.dir, 'k.lock');
    expect(await lockHolder(path)).toBeUndefined();
    const held = await acquireLock(path);
    expect(await lockHolder(path)).toBe(process.pid);
    await held.release();
    expect(await lockHolder(path)).toBeUndefined();
    await writeFile(path, JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), nonce: 'x' }));
    expect(await lockHolder(path)).toBeUndefined();
    // Another host's holder cannot be asked: live while its heartbeat is fresh.
    await writeFile(path, JSON.stringify({ pid: 77, host: 'elsewhere', nonce: 'x' }));
    expect(await lockHolder(path)).toBe(77);
    const old = new Date(Date.now() - 120_000);
    await utimes(path, old, old);
    expect(await lockHolder(path)).toBeUndefined();
  });
});
