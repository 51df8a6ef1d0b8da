// The runc builder's cache entries: complete or absent, held while a run uses them, readable even if removed meanwhile.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostTag } from '../../src/core/leftovers.js';
import { Scope } from '../../src/core/scope.js';
import { BuildCache, buildCheck, type BuildRecord } from '../../src/build/build-cache.js';
import { sha256 } from '../../src/source/digest.js';
import { Store } from '../../src/store/index.js';

const KEY = 'a'.repeat(64);
const LAYER = Buffer.alloc(2048, 1);
const CONFIG = Buffer.from(
  '{"architecture":"amd64","os":"linux","config":{"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":[]}}',
);

let dir: string;
let store: Store;
let cache: BuildCache;

async function writeEntry(into: string, key = KEY): Promise<void> {
  mkdirSync(into, { recursive: true });
  writeFileSync(join(into, 'layer.tar'), LAYER);
  writeFileSync(join(into, 'config.json'), CONFIG);
  const rec: BuildRecord = {
    format: 1,
    builder: 'runc',
    key,
    base: `sha256:${'b'.repeat(64)}`,
    template: 'debian',
    label: 'Debian 12',
    createdAt: '2024-01-01T00:00:00Z',
    layer: { digest: sha256(LAYER), size: LAYER.length, entries: 1 },
    configDigest: sha256(CONFIG),
  };
  writeFileSync(join(into, 'build.json'), JSON.stringify(rec));
}

async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'img2vm-buildcache-'));
  store = new Store(join(dir, 'cache'));
  cache = new BuildCache(store);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('BuildCache', () => {
  it('an entry counts only once it is complete; a miss leaves nothing behind', async () => {
    const scope = new Scope();
    expect(await cache.use(KEY, scope, 'ref')).toBeUndefined();
    expect(existsSync(cache.entryDir(KEY))).toBe(false);
    const broken = await store.draft('build', KEY);
    await writeEntry(broken.path);
    rmSync(join(broken.path, 'build.json'));
    await broken.publish();
    expect(await cache.find(KEY)).toBeUndefined();
    // A broken leftover is replaced by the next complete build.
    const whole = await store.draft('build', KEY);
    await writeEntry(whole.path);
    await whole.publish(buildCheck(KEY));
    expect((await cache.find(KEY))?.record.key).toBe(KEY);
    expect(readdirSync(store.tmp)).toEqual([]);
    await scope.close();
  });

  it('use() gives a one-layer image, stamps the use, holds the entry until the scope closes', async () => {
    const d = await store.draft('build', KEY);
    await writeEntry(d.path);
    await d.publish(buildCheck(KEY));
    const old = new Date('2024-01-01T00:00:00Z');
    utimesSync(cache.entryDir(KEY), old, old);
    const scope = new Scope();
    const img = (await cache.use(KEY, scope, 'oci-archive:x'))!;
    expect(img).toMatchObject({
      ref: 'oci-archive:x',
      id: sha256(CONFIG),
      configBytes: CONFIG,
      config: { config: { Env: ['A=1'] } },
    });
    expect(img.layers.map((l) => [l.digest, l.size])).toEqual([[sha256(LAYER), LAYER.length]]);
    expect((await store.status('build', KEY)).holders).toEqual([process.pid]);
    expect(statSync(cache.entryDir(KEY)).mtimeMs).toBeGreaterThan(old.getTime());
    // Two readers at once, and one after the entry was removed: the run's descriptor keeps the bytes.
    const [a, b] = await Promise.all([readAll(await img.layers[0]!.open()), readAll(await img.layers[0]!.open())]);
    expect(a).toEqual(LAYER);
    expect(b).toEqual(LAYER);
    await store.discard('build', KEY);
    expect(existsSync(cache.entryDir(KEY))).toBe(false);
    expect(await readAll(await img.layers[0]!.open())).toEqual(LAYER);
    await scope.close();
    expect((await store.status('build', KEY)).holders).toEqual([]);
  });

  it('holders of processes that are gone do not count, and are cleared', async () => {
    const d = await store.draft('build', KEY);
    await writeEntry(d.path);
    await d.publish(buildCheck(KEY));
    mkdirSync(store.holders, { recursive: true });
    writeFileSync(join(store.holders, `build.${KEY}.999999999.${hostTag()}.abcdefabcdef`), '');
    expect((await store.status('build', KEY)).holders).toEqual([]);
    expect(readdirSync(store.holders)).toEqual([]);
  });

  it('sweep removes what dead processes were writing and keeps what live ones are', async () => {
    mkdirSync(join(store.tmp, `build.${KEY}.999999999.${hostTag()}.abcdefabcdef`), { recursive: true });
    const mine = await store.draft('build', KEY);
    await store.sweep();
    expect(readdirSync(store.tmp)).toEqual([mine.scratch.split('/').pop()]);
  });

  it("stamps a podman image's use by its tag", async () => {
    await cache.touchPodman('cache', '0123');
    expect(await readFile(cache.podmanStamp('cache', '0123'), 'utf8')).toBe('');
  });
});
