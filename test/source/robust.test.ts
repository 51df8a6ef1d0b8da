// Sources under interruption and concurrency: indexing an archive stops when aborted, and
// concurrent pulls into one cache fetch each blob once, waiting on its lock rather than racing.
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildImage, gz, tarOf } from '../../fixtures/hostile/images.js';
import { FakeRegistry } from '../../fixtures/hostile/registry.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { indexArchive } from '../../src/source/archive-index.js';
import { BlobCache } from '../../src/source/blob-cache.js';
import { openStore } from '../../src/store/index.js';
import { openSource } from '../../src/source/index.js';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let reg: FakeRegistry | undefined;
beforeEach(async () => {
  sb = await sandbox();
});
afterEach(async () => {
  await reg?.close();
  reg = undefined;
  await sb.close();
});

describe('indexArchive', () => {
  it('stops indexing when the run is aborted, with the abort reason', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 2000; i++) files[`m${i}`] = 'x';
    const file = join(sb.input, 'many.tar');
    await writeFile(file, await tarOf(files));
    const ac = new AbortController();
    const reason = new Error('interrupted by SIGINT');
    let seen = 0;
    const got = indexArchive(file, {
      signal: ac.signal,
      onBytes: (n) => (seen += n) > 64 * 1024 && ac.abort(reason),
    });
    await expect(got).rejects.toBe(reason);
    expect(seen).toBeGreaterThan(64 * 1024);
  });

  it('an aborted signal stops it before anything is read', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    const file = join(sb.input, 'one.tar');
    await writeFile(file, await tarOf({ a: 'a' }));
    await expect(indexArchive(file, { signal: ac.signal })).rejects.toThrow('stop');
  });
});

describe('concurrent pulls into one cache', () => {
  it("fetch each blob once: the second waits on the first one's lock, then reads the cache", async () => {
    reg = await FakeRegistry.start();
    const img = buildImage({
      layers: [
        gz(await tarOf({ 'a.bin': createRandom('a').bytes(256 * 1024) })),
        gz(await tarOf({ 'b.bin': createRandom('b').bytes(256 * 1024) })),
      ],
    });
    reg.push('team/app', 'v1', img);
    const ctx2 = { ...sb.ctx, scope: new Scope() };
    const o = { cacheDir: sb.cache, registry: { backoffMs: 1 }, env: { HOME: sb.input } };
    const [a, b] = await Promise.all([
      openSource(`docker://${reg.host}/team/app:v1`, sb.ctx, undefined, o),
      openSource(`docker://${reg.host}/team/app:v1`, ctx2, undefined, o),
    ]);
    await ctx2.scope.close();
    expect(a.id).toBe(b.id);
    for (const blob of [img.config, ...img.layers])
      expect(
        reg.blobRequests(blob.digest).filter((r) => r.method === 'GET'),
        blob.digest,
      ).toHaveLength(1);
    const waited = sb.events.some(
      (e) => e.type === 'log' && /waiting for img2vm process \d+, which is fetching it/.test(e.message),
    );
    expect(waited).toBe(true);
    expect(await readdir(join(sb.cache, 'locks'))).toEqual([]);
    expect(await new BlobCache(openStore(sb.cache)).verify(img.layers[0]!.digest, img.layers[0]!.size)).toBe(true);
  });
});
