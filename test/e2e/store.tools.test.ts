// A pull SIGKILLed while it writes a blob into the store leaves a draft, a lock and holders, never a partial entry: `cache ls` does not count them, `cache prune` sweeps them, and the next run fetches the blob once and ends with nothing left over.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuiltImage } from '../../fixtures/hostile/images.js';
import { FakeRegistry } from '../../fixtures/hostile/registry.js';
import { img2vm } from './helpers.js';
import { entries, interruptAt, lightImage } from './robust-helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };

let tmp: string;
let img: BuiltImage;
let reg: FakeRegistry;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'img2vm-store-e2e-'));
  img = await lightImage(4);
  reg = await FakeRegistry.start();
  reg.push('e2e/light', 'v1', img);
}, 120_000);

afterAll(async () => {
  await reg?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('a writer killed in the middle of a blob', () => {
  it('leaves only what the next run sweeps; the blob is fetched again, once', async () => {
    const xdg = join(tmp, 'xdg');
    const store = join(xdg, 'img2vm');
    const env = { ...NO_DAEMON, XDG_CACHE_HOME: xdg, TMPDIR: mkdtempSync(join(tmp, 'work-')), HOME: tmp };
    const args = (out: string) => [
      `docker://${reg.host}/e2e/light:v1`,
      '-o',
      join(tmp, out),
      '--raw',
      '--boot',
      'bios',
    ];
    const r = await interruptAt('during:source/fetch-blob', args('a.img'), env, 'SIGKILL');
    expect(r.signal).toBe('SIGKILL');
    const owner = new RegExp(`^blob\\.[0-9a-f]{64}\\.${r.pid}\\.[0-9a-f]{8}\\.[0-9a-f]{12}$`);
    // Its drafts (layers come three at a time), the locks it held, and its claims on the blobs it was pulling; no partial entry.
    const drafts = entries(join(store, 'tmp'));
    expect(drafts.length).toBeGreaterThan(0);
    for (const d of drafts) expect(d).toMatch(owner);
    const killed = drafts.map((d) => d.split('.')[1]!).sort();
    expect(entries(join(store, 'locks'))).toEqual(killed.map((h) => `blob.${h}.lock`));
    expect(entries(join(store, 'holders')).length).toBeGreaterThan(0);
    for (const h of entries(join(store, 'holders'))) expect(h).toMatch(owner);
    for (const h of killed) expect(entries(join(store, 'blobs', 'sha256'))).not.toContain(h);
    for (const n of entries(join(store, 'blobs', 'sha256')))
      expect(
        createHash('sha256')
          .update(readFileSync(join(store, 'blobs', 'sha256', n)))
          .digest('hex'),
      ).toBe(n);

    // The dead writer keeps nothing busy, and its draft is no entry.
    const ls = await img2vm(['cache', 'ls', '--json'], { env });
    expect(ls.exitCode, ls.all).toBe(0);
    const listed = JSON.parse(ls.stdout) as { entries: { name: string; busy: string | null }[] };
    for (const h of killed) expect(listed.entries.map((e) => e.name)).not.toContain(`sha256:${h}`);
    expect(listed.entries.filter((e) => e.busy)).toEqual([]);
    // Prune that removes nothing (all is fresh) still sweeps what the killed run left.
    const pr = await img2vm(['cache', 'prune', '--json'], { env });
    expect(pr.exitCode, pr.all).toBe(0);
    expect(JSON.parse(pr.stdout).removed).toEqual([]);
    expect(entries(join(store, 'tmp'))).toEqual([]);
    expect(entries(join(store, 'holders'))).toEqual([]);

    // The next run breaks the dead locks, fetches each killed blob once, and leaves nothing of its own.
    const gets = (h: string) => reg.blobRequests(`sha256:${h}`).filter((q) => q.method === 'GET').length;
    const before = killed.map(gets);
    const again = await img2vm(args('b.img'), { env });
    expect(again.exitCode, again.all).toBe(0);
    expect(killed.map((h, i) => gets(h) - before[i]!)).toEqual(killed.map(() => 1));
    for (const h of killed) expect(entries(join(store, 'blobs', 'sha256'))).toContain(h);
    for (const d of ['tmp', 'locks', 'holders']) expect(entries(join(store, d)), d).toEqual([]);
  });

  it('SIGINT instead: the run removes its own draft, lock and holders before it exits', async () => {
    const xdg = join(tmp, 'xdg-int');
    const env = { ...NO_DAEMON, XDG_CACHE_HOME: xdg, TMPDIR: mkdtempSync(join(tmp, 'work-')), HOME: tmp };
    const r = await interruptAt(
      'during:source/fetch-blob',
      [`docker://${reg.host}/e2e/light:v1`, '-o', join(tmp, 'c.img'), '--raw', '--boot', 'bios'],
      env,
      'SIGINT',
    );
    expect(r.exitCode, r.stderr).toBe(130);
    for (const d of ['tmp', 'locks', 'holders']) expect(entries(join(xdg, 'img2vm', d)), d).toEqual([]);
  });
});
