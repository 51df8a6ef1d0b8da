// A cached kernel tree that lost files (or bytes) since it was made is detected, removed and unpacked again; listing
// the cache never removes anything.
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fakeKernelDeb } from '../../fixtures/debian-mirror/kernel.js';
import { KernelCache } from '../../src/kernel/cache.js';
import { openStore } from '../../src/store/index.js';
import { localDebKernel } from '../../src/kernel/debian.js';
import { listFiles, testEnv, type TestEnv } from './helpers.js';

const VERSION = '6.1.0-99-test';
let env: TestEnv;
let deb: string;

beforeEach(async () => {
  env = await testEnv();
  deb = join(env.dir, 'linux-image.deb');
  writeFileSync(
    deb,
    await fakeKernelDeb({
      version: VERSION,
      usrMerged: false,
      modules: { 'drivers/block/virtio_blk.ko': 'blk', 'fs/ext4/ext4.ko': 'ext4' },
    }),
  );
});
afterEach(() => env.close());

describe('damaged kernel trees', () => {
  it('a tree missing a module is unpacked again; a whole tree is used as it is', async () => {
    const cache = new KernelCache(openStore(env.cache));
    const first = await localDebKernel(deb, env.ctx, cache);
    const tree = join(first.modulesDir!, '..', '..', '..');
    const files = await listFiles(tree);
    const mod = join(first.modulesDir!, 'kernel', 'drivers', 'block', 'virtio_blk.ko');
    expect(readFileSync(mod, 'utf8')).toBe('blk');
    // Used again untouched: the same tree, nothing rebuilt.
    const name = `sha256-${createHash('sha256').update(readFileSync(deb)).digest('hex')}`;
    const before = (await cache.readTree(name))!.createdAt;
    expect((await localDebKernel(deb, env.ctx, cache)).vmlinuz).toBe(first.vmlinuz);
    expect((await cache.readTree(name))!.createdAt).toBe(before);

    rmSync(mod);
    // Listing does not judge (and does not remove) the tree.
    expect((await cache.allTrees()).map((t) => t.name)).toEqual([name]);
    const again = await localDebKernel(deb, env.ctx, cache);
    expect(readFileSync(join(again.modulesDir!, 'kernel', 'drivers', 'block', 'virtio_blk.ko'), 'utf8')).toBe('blk');
    expect(await listFiles(tree)).toEqual(files);
    expect(await listFiles(cache.store.tmp)).toEqual([]);
  });

  it('a tree whose file lost bytes is unpacked again', async () => {
    const cache = new KernelCache(openStore(env.cache));
    const first = await localDebKernel(deb, env.ctx, cache);
    const size = readFileSync(first.vmlinuz).length;
    truncateSync(first.vmlinuz, size - 1);
    const again = await localDebKernel(deb, env.ctx, cache);
    expect(readFileSync(again.vmlinuz).length).toBe(size);
  });
});
