// The one store: a key is made once however many writers want it, a killed writer leaves only a draft the next sweep removes, a damaged entry is found on read and made again, and prune never takes what a live process holds.
import { execa } from 'execa';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { inventory, prune } from '../../src/cache/index.js';
import { hostTag, pidAlive } from '../../src/core/leftovers.js';
import { Scope } from '../../src/core/scope.js';
import { Store, type Check } from '../../src/store/index.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const KEY = hex('a build');
const OTHER = hex('another build');

let root: string;
let scope: Scope;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'img2vm-store-'));
  scope = new Scope();
});
afterEach(async () => {
  await scope.close();
  rmSync(root, { recursive: true, force: true });
});

/** A toy kind of entry: a directory with one file whose name is the SHA-256 of its content. */
const check: Check = {
  whole: async (dir) => readdirSync(dir).length === 1,
  intact: async (dir) => readdirSync(dir).every((n) => hex(readFileSync(join(dir, n), 'utf8')) === n),
};
function fill(dir: string, content = 'the built tree'): void {
  writeFileSync(join(dir, hex(content)), content);
}

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  const pid = Number(String(spawnSync('sh', ['-c', 'echo $$']).stdout).trim());
  expect(pidAlive(pid)).toBe(false);
  return pid;
}

const list = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

describe('writing an entry', () => {
  it('concurrent writers of one key make it once: the first under the lock, the others wait and then find it', async () => {
    // Two stores on one root stand for two processes: they share nothing but the directory.
    const stores = [new Store(root), new Store(root), new Store(root)];
    let makes = 0;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const waited: number[] = [];
    const runs = stores.map((s) =>
      s.ensure('build', KEY, {
        scope,
        check,
        lock: { pollMs: 10, onWait: (pid) => (waited.push(pid), waited.length === stores.length - 1 && open()) },
        make: async (d) => {
          makes++;
          // Holds the key until every other writer is waiting on its lock.
          await gate;
          fill(d.path);
        },
      }),
    );
    const got = await Promise.all(runs);
    expect(makes).toBe(1);
    expect(got.map((g) => g.made).sort()).toEqual([false, false, true]);
    expect(new Set(got.map((g) => g.path))).toEqual(new Set([join(root, 'builds', 'runc', KEY)]));
    expect(waited).toEqual([process.pid, process.pid]);
    expect(list(join(root, 'builds', 'runc', KEY))).toEqual([hex('the built tree')]);
    expect(list(join(root, 'tmp'))).toEqual([]);
    expect(list(join(root, 'locks'))).toEqual([]);
  });

  it('a draft is private until published, checked before it is, and gone when its run fails', async () => {
    const s = new Store(root);
    const d = await s.draft('build', KEY, scope);
    fill(d.path);
    expect((await s.entries()).map((e) => e.key)).toEqual([]);
    // What does not check out is not published.
    writeFileSync(join(d.path, hex('x')), 'not x');
    await expect(d.publish(check)).rejects.toMatchObject({
      kind: 'outputNotWritable',
      message: expect.stringMatching(/does not read back as written/),
    });
    expect(existsSync(s.path('build', KEY))).toBe(false);
    await d.discard();
    expect(list(s.tmp)).toEqual([]);
    // A failing make leaves nothing either.
    await expect(
      s.ensure('build', KEY, { scope, check, make: async () => Promise.reject(new Error('the build failed')) }),
    ).rejects.toThrow('the build failed');
    expect(list(s.tmp)).toEqual([]);
    expect(existsSync(s.path('build', KEY))).toBe(false);
  });

  it('a file entry (a blob) is written, fsynced and renamed the same way', async () => {
    const s = new Store(root);
    const digest = `sha256:${hex('bytes')}` as const;
    const d = await s.draft('blob', digest, scope);
    writeFileSync(d.path, 'bytes');
    expect(await d.publish({ whole: async (p) => statSync(p).size === 5 })).toBe(
      join(root, 'blobs', 'sha256', hex('bytes')),
    );
    expect(readFileSync(s.path('blob', digest), 'utf8')).toBe('bytes');
    expect(list(s.tmp)).toEqual([]);
  });
});

describe('a writer that was killed', () => {
  it('leaves only its draft, not an entry; the next sweep removes it, and what live writers have stays', async () => {
    const s = new Store(root);
    const killed = await s.draft('build', KEY);
    fill(killed.path);
    // The draft as a process that died midway would have left it (its pid in the name).
    const dead = deadPid();
    const left = killed.scratch.replace(`.${process.pid}.${hostTag()}.`, `.${dead}.${hostTag()}.`);
    renameSync(killed.scratch, left);
    const live = await s.draft('build', OTHER, scope);
    // Another host's draft cannot be judged by its pid: kept for a day, then removed.
    const foreign = join(
      s.tmp,
      `build.${OTHER}.4242.${hostTag() === '0badc0de' ? '0badc0df' : '0badc0de'}.abcdefabcdef`,
    );
    const foreignOld = `${foreign.slice(0, -12)}000000000000`;
    mkdirSync(foreign);
    mkdirSync(foreignOld);
    const old = new Date(Date.now() - 2 * 86400_000);
    utimesSync(foreignOld, old, old);

    expect(await s.entries()).toEqual([]);
    // The dead writer does not keep its kind busy; the live one does, and so does another host's while it is recent.
    expect((await s.status('build', KEY)).writers.sort()).toEqual([4242, process.pid].sort());
    expect(await s.sweep()).toEqual([foreignOld, left].sort());
    expect(list(s.tmp)).toEqual([live.scratch, foreign].map((p) => p.split('/').pop()).sort());
    await live.discard();
    expect((await s.status('build', KEY)).writers).toEqual([4242]);
  });

  it('leaves a lock and holders that do not block the next writer, nor keep the entry from prune', async () => {
    const s = new Store(root);
    const dead = deadPid();
    mkdirSync(s.locks, { recursive: true });
    writeFileSync(
      s.lockPath('build', KEY),
      JSON.stringify({ pid: dead, host: (await import('node:os')).hostname(), nonce: 'dead' }),
    );
    mkdirSync(s.holders, { recursive: true });
    writeFileSync(join(s.holders, `build.${KEY}.${dead}.${hostTag()}.abcdefabcdef`), '');
    const got = await s.ensure('build', KEY, { scope, check, lock: { pollMs: 10 }, make: async (d) => fill(d.path) });
    expect(got.made).toBe(true);
    await scope.close();
    expect((await s.status('build', KEY)).holders).toEqual([]);
    expect(list(s.holders)).toEqual([]);
    expect(list(s.locks)).toEqual([]);
  });
});

describe('reading an entry', () => {
  it('a damaged entry is found on read, removed, and made again', async () => {
    const s = new Store(root);
    let makes = 0;
    const o = { scope, check, make: async (d: { path: string }) => (makes++, fill(d.path)) };
    const first = await s.ensure('build', KEY, o);
    const file = join(first.path, hex('the built tree'));
    writeFileSync(file, 'the built trea');
    expect(await s.take('build', KEY, scope, check)).toBeUndefined();
    expect(existsSync(first.path)).toBe(false);
    expect(await s.ensure('build', KEY, o)).toEqual({ path: first.path, made: true });
    expect(makes).toBe(2);
    expect(readFileSync(file, 'utf8')).toBe('the built tree');
  });

  it("with verify: 'entry' the bytes are checked once, on entry, and trusted after; wholeness still on every read", async () => {
    const s = new Store(root, { verify: 'entry' });
    const { path } = await s.ensure('build', KEY, { scope, check, make: async (d) => fill(d.path) });
    writeFileSync(join(path, hex('the built tree')), 'the built trea');
    expect(await s.take('build', KEY, scope, check)).toBe(path);
    writeFileSync(join(path, 'a second file'), '');
    expect(await s.take('build', KEY, scope, check)).toBeUndefined();
    // On entry the bytes are checked whatever the flag.
    const d = await s.draft('build', OTHER, scope);
    writeFileSync(join(d.path, hex('x')), 'not x');
    await expect(d.publish(check)).rejects.toThrow(/does not read back as written/);
  });

  it("a use is the entry's mtime: taking it moves it, listing it does not", async () => {
    const s = new Store(root);
    const { path } = await s.ensure('build', KEY, { scope, check, make: async (d) => fill(d.path) });
    const old = new Date('2024-01-01T00:00:00Z');
    utimesSync(path, old, old);
    expect((await s.entries()).map((e) => [e.key, e.lastUsed])).toEqual([[KEY, old.getTime()]]);
    expect(statSync(path).mtimeMs).toBe(old.getTime());
    const run = new Scope();
    await s.take('build', KEY, run, check);
    await run.close();
    expect((await s.entries())[0]!.lastUsed).toBeGreaterThan(old.getTime());
  });
});

describe('prune over the store', () => {
  const loc = () => ({ root, imageStores: false });

  it('never removes what a live process holds, nor a kind while a live process writes it', async () => {
    const s = new Store(root);
    const making = new Scope();
    for (const k of [KEY, OTHER])
      await s.ensure('build', k, { scope: making, check, make: async (d) => fill(d.path, k) });
    await making.close();
    const blob = `sha256:${hex('blob')}` as const;
    const bd = await s.draft('blob', blob);
    writeFileSync(bd.path, 'blob');
    await bd.publish();
    // KEY: held by this process's run; OTHER: by another live process (a child that sleeps).
    await s.hold('build', KEY, scope);
    const child = execa('sleep', ['600'], { reject: false });
    writeFileSync(join(s.holders, `build.${OTHER}.${child.pid}.${hostTag()}.abcdefabcdef`), '');
    // And a blob being written by a live process: no blob is taken meanwhile.
    const writing = await s.draft('blob', `sha256:${hex('more')}`);
    try {
      const inv = await inventory(loc());
      expect(inv.items.map((i) => [i.entry.name, i.entry.busy])).toEqual([
        [`runc:${KEY.slice(0, 32)}`, `in use by img2vm process ${process.pid}`],
        [`runc:${OTHER.slice(0, 32)}`, `in use by img2vm process ${child.pid}`],
        [blob, `a pull is under way (img2vm process ${process.pid})`],
      ]);
      const r = await prune({ all: true }, loc());
      expect(r.removed).toEqual([]);
      expect(r.kept.map((k) => k.entry.name).sort()).toEqual(
        [blob, `runc:${KEY.slice(0, 32)}`, `runc:${OTHER.slice(0, 32)}`].sort(),
      );
      expect((await s.entries()).length).toBe(3);
    } finally {
      await writing.discard();
      child.kill('SIGKILL');
      await child;
    }
    // The other process is gone: its entry goes. Ours stays until our run ends.
    expect((await prune({ all: true }, loc())).removed.map((x) => x.entry.name).sort()).toEqual(
      [blob, `runc:${OTHER.slice(0, 32)}`].sort(),
    );
    await scope.close();
    expect((await prune({ all: true }, loc())).removed.map((x) => x.entry.name)).toEqual([`runc:${KEY.slice(0, 32)}`]);
    expect(await s.entries()).toEqual([]);
  });

  it('keeps a place for converted disks: keyed by a hex digest under disks/, listed and pruned like the rest', async () => {
    const s = new Store(root);
    const key = hex('every input of one conversion');
    const making = new Scope();
    await s.ensure('disk', key, {
      scope: making,
      check: { whole: async () => true },
      make: async (d) => writeFileSync(join(d.path, 'disk.qcow2'), 'qcow'),
    });
    await making.close();
    expect(s.path('disk', key)).toBe(join(root, 'disks', key));
    expect((await inventory(loc())).items.map((i) => [i.entry.kind, i.entry.name, i.entry.bytes])).toEqual([
      ['converted-disk', `disk:${key}`, 4],
    ]);
    expect((await prune({ all: true }, loc())).removed.map((x) => x.entry.kind)).toEqual(['converted-disk']);
    expect(() => s.path('disk', 'not a digest')).toThrow(/not a disk key/);
  });
});
