// Blobs are verified once, as they enter the store: a later run reads cached layers without hashing them again,
// --verify-cache hashes them again, and `cache verify` finds (and removes) a blob damaged in the cache.
import { writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildImage, gz, tarOf } from '../../fixtures/hostile/images.js';
import { FakeRegistry } from '../../fixtures/hostile/registry.js';
import { verifyStore } from '../../src/cache/index.js';
import { renderVerify } from '../../src/cli/cache.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { BlobCache } from '../../src/source/blob-cache.js';
import { hashWatch } from '../../src/source/digest.js';
import { openSource, type OpenSourceOptions } from '../../src/source/index.js';
import { openStore } from '../../src/store/index.js';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let reg: FakeRegistry;
beforeEach(async () => {
  sb = await sandbox();
  reg = await FakeRegistry.start();
});
afterEach(async () => {
  hashWatch.onBytes = undefined;
  await reg.close();
  await sb.close();
});

async function pushed() {
  const img = buildImage({
    layers: [
      gz(await tarOf({ 'a.bin': createRandom('a').bytes(200 * 1024) })),
      gz(await tarOf({ 'b.bin': createRandom('b').bytes(300 * 1024) })),
    ],
  });
  reg.push('team/app', 'v1', img);
  return img;
}

/** Opens the image in a run of its own and reads every layer to its end; returns the bytes hashed meanwhile. */
async function run(o: OpenSourceOptions = {}): Promise<{ hashed: number; layers: Buffer[] }> {
  let hashed = 0;
  hashWatch.onBytes = (n) => (hashed += n);
  const ctx = { ...sb.ctx, scope: new Scope() };
  try {
    const img = await openSource(`docker://${reg.host}/team/app:v1`, ctx, undefined, {
      cacheDir: sb.cache,
      registry: { backoffMs: 1 },
      env: { HOME: sb.input },
      ...o,
    });
    const layers: Buffer[] = [];
    for (const l of img.layers) {
      const parts: Buffer[] = [];
      for await (const c of await l.open()) parts.push(c as Buffer);
      layers.push(Buffer.concat(parts));
    }
    return { hashed, layers };
  } finally {
    hashWatch.onBytes = undefined;
    await ctx.scope.close();
  }
}

describe('verify once', () => {
  it('a second run reads the cached layers without hashing them; --verify-cache hashes them again', async () => {
    const img = await pushed();
    const layerBytes = img.layers.reduce((s, l) => s + l.size, 0);
    const first = await run();
    // Pulled: every layer hashed as it entered the store.
    expect(first.hashed).toBeGreaterThanOrEqual(layerBytes);
    const second = await run();
    expect(second.layers).toEqual(img.layers.map((l) => l.bytes));
    expect(second.hashed).toBe(0);
    const checked = await run({ verifyCache: true });
    expect(checked.layers).toEqual(img.layers.map((l) => l.bytes));
    // Once to check each cached layer before use, once more as it is read.
    expect(checked.hashed).toBeGreaterThanOrEqual(2 * layerBytes);
    // Nothing was fetched again.
    for (const l of img.layers) expect(reg.blobRequests(l.digest).filter((r) => r.method === 'GET')).toHaveLength(1);
  });

  it('cache verify finds a blob damaged in the store and removes it; the next run fetches it again', async () => {
    const img = await pushed();
    await run();
    const bad = img.layers[1]!;
    const path = new BlobCache(openStore(sb.cache)).pathOf(bad.digest);
    const flipped = Buffer.from(bad.bytes);
    flipped[flipped.length - 1]! ^= 0xff;
    await writeFile(path, flipped);

    const report = await verifyStore({ root: sb.cache, imageStores: false });
    expect(report.damaged).toEqual([{ kind: 'blob', key: bad.digest, path }]);
    // Every blob (two layers, config, manifest) was hashed through.
    expect(report.checked).toBe(4);
    expect(report.hashedBytes).toBeGreaterThanOrEqual(img.layers.reduce((s, l) => s + l.size, 0));
    expect(await new BlobCache(openStore(sb.cache)).has(bad.digest)).toBe(false);
    expect(renderVerify(report)).toMatch(
      new RegExp(
        `^damaged  blob ${bad.digest}: removed \\(.+\\); the next run fetches or makes it again\\n4 entries checked \\([0-9.]+[BKMG] hashed\\), 1 damaged\\n$`,
      ),
    );

    const again = await run();
    expect(again.layers).toEqual(img.layers.map((l) => l.bytes));
    expect(reg.blobRequests(bad.digest).filter((r) => r.method === 'GET')).toHaveLength(2);
    expect((await verifyStore({ root: sb.cache, imageStores: false })).damaged).toEqual([]);
  });
});
