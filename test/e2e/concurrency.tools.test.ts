// Concurrent conversions sharing one cache: four processes on a cold cache all succeed, each blob is fetched from the
// registry once (a lock per blob, not only atomic renames), and with one --seed the four disks are identical.
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuiltImage } from '../../fixtures/hostile/images.js';
import { BIN, img2vm, startRegistry } from './helpers.js';
import { CountingProxy, entries, lightImage, pushBuilt } from './robust-helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };
const N = 4;

let tmp: string;
let img: BuiltImage;
let registry: { host: string; process: ReturnType<typeof execa> };
let proxy: CountingProxy;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'img2vm-concurrent-'));
  img = await lightImage(12);
  registry = await startRegistry(join(tmp, 'registry'));
  proxy = new CountingProxy(registry.host);
  await proxy.start();
  await pushBuilt(img, `${registry.host}/e2e/light:v1`, tmp);
}, 10 * 60_000);

afterAll(async () => {
  await proxy?.stop();
  registry?.process.kill('SIGTERM');
  await registry?.process;
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

describe('four conversions of one registry image on one cold cache', () => {
  it('all succeed, fetch each blob once, and give identical disks with one seed', async () => {
    const xdg = join(tmp, 'xdg');
    const work = join(tmp, 'work');
    mkdirSync(work);
    proxy.gets.clear();
    // Blob answers wait until each of the four runs is either fetching a blob (its GET held here) or waiting for
    // another run's lock on it: the runs overlap for certain, so without the lock all four would fetch.
    const waiting = new Set<number>();
    proxy.releaseWhen = () => proxy.heldCount + waiting.size >= N;
    const runs = Array.from({ length: N }, (_, i) => {
      const child = execa(
        BIN,
        [
          `docker://${proxy.host}/e2e/light:v1`,
          '-o',
          join(tmp, `disk-${i}.qcow2`),
          '--raw',
          '--boot',
          'bios',
          '--seed',
          'same',
          '-v',
        ],
        {
          env: { CI: 'true', XDG_CACHE_HOME: xdg, TMPDIR: work, SOURCE_DATE_EPOCH: '1700000000', ...NO_DAEMON },
          reject: false,
          all: true,
        },
      );
      child.stderr!.on('data', (d: Buffer) => {
        if (/waiting for img2vm process \d+, which is fetching it/.test(String(d))) {
          waiting.add(i);
          proxy.poke();
        }
      });
      return child;
    });
    const results = await Promise.all(runs);
    for (const r of results) expect(r.exitCode, r.all).toBe(0);
    for (const b of [img.config, ...img.layers]) expect(proxy.blobGets(b.digest), `GETs of ${b.digest}`).toBe(1);
    expect(waiting.size, "runs that waited for another one's fetch").toBeGreaterThan(0);
    const digests = new Set(Array.from({ length: N }, (_, i) => sha(join(tmp, `disk-${i}.qcow2`))));
    expect(digests.size).toBe(1);
    // The cache holds each blob once, whole; no partial, no lock, no work directory is left.
    const blobs = entries(join(xdg, 'img2vm', 'blobs', 'sha256'));
    expect(blobs).toEqual([img.manifest, img.config, ...img.layers].map((b) => b.digest.slice(7)).sort());
    for (const b of [img.config, ...img.layers])
      expect(sha(join(xdg, 'img2vm', 'blobs', 'sha256', b.digest.slice(7)))).toBe(b.digest.slice(7));
    expect(entries(join(xdg, 'img2vm', 'locks'))).toEqual([]);
    expect(entries(work)).toEqual([]);
  });

  it('warm: four more runs fetch nothing and give the same disk', async () => {
    const xdg = join(tmp, 'xdg');
    const work = join(tmp, 'work');
    proxy.gets.clear();
    proxy.releaseWhen = () => true;
    const first = sha(join(tmp, 'disk-0.qcow2'));
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        img2vm(
          [
            `docker://${proxy.host}/e2e/light:v1`,
            '-o',
            join(tmp, `warm-${i}.qcow2`),
            '--raw',
            '--boot',
            'bios',
            '--seed',
            'same',
          ],
          {
            env: { XDG_CACHE_HOME: xdg, TMPDIR: work, SOURCE_DATE_EPOCH: '1700000000', ...NO_DAEMON },
          },
        ),
      ),
    );
    for (const r of results) expect(r.exitCode, r.all).toBe(0);
    for (const b of [img.config, ...img.layers]) expect(proxy.blobGets(b.digest)).toBe(0);
    for (let i = 0; i < N; i++) expect(sha(join(tmp, `warm-${i}.qcow2`))).toBe(first);
  });
});
