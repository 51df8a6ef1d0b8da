// A kernel image whose modules lack modules.dep: img2vm runs depmod (kmod) on them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getKernel } from '../../src/kernel/index.js';
import { buildImage, imageBlobs, tarOf, writeLayout, type FileSpec } from '../../fixtures/hostile/images.js';
import { fakeBzImage } from '../../fixtures/debian-mirror/kernel.js';
import { testEnv, type TestEnv } from './helpers.js';

let env: TestEnv;
beforeEach(async () => {
  env = await testEnv();
});
afterEach(async () => {
  await env.close();
});

async function layout(layers: Record<string, FileSpec>[]): Promise<string> {
  const img = buildImage({ layers: await Promise.all(layers.map((l) => tarOf(l))) });
  const dir = join(env.dir, `layout-${Math.random().toString(36).slice(2)}`);
  await writeLayout(dir, [{ top: img.manifest }], imageBlobs(img));
  return `oci:${dir}`;
}

const kernel = (ref: string) => getKernel({ kind: 'image', ref }, env.ctx, { cacheDir: env.cache });

describe('kernel images', () => {
  it('runs depmod for an image whose modules lack modules.dep', async () => {
    const ref = await layout([{ 'boot/vmlinuz-6.1.0': fakeBzImage('6.1.0'), 'lib/modules/6.1.0/kernel/a.ko': 'a' }]);
    const b = await kernel(ref);
    expect(await readFile(join(b.modulesDir!, 'modules.dep'), 'utf8')).toBe('kernel/a.ko:\n');
  });
});
