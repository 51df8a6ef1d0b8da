// What a run has taken from the store stays while the run lives: `cache prune --all` during a conversion keeps its kernel and its image's blobs, and takes them once the run has ended.
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fakeKernelDeb } from '../../fixtures/debian-mirror/kernel.js';
import { buildImage, gz, tarOf } from '../../fixtures/hostile/images.js';
import { FakeRegistry } from '../../fixtures/hostile/registry.js';
import { prune } from '../../src/cache/index.js';
import { getKernel } from '../../src/kernel/index.js';
import { openSource } from '../../src/source/index.js';
import { sandbox, type Sandbox } from '../source/helpers.js';

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

const all = () => prune({ all: true }, { root: sb.cache, imageStores: false });
const held = `in use by img2vm process ${process.pid}`;

describe('prune while a run uses the store', () => {
  it('keeps the kernel a run has taken until the run ends', async () => {
    const deb = join(sb.input, 'linux-image.deb');
    writeFileSync(
      deb,
      await fakeKernelDeb({ version: '6.1.0-99-test', usrMerged: false, modules: { 'fs/ext4/ext4.ko': 'ext4' } }),
    );
    const k = await getKernel({ kind: 'deb', path: deb }, sb.ctx, { cacheDir: sb.cache });
    const during = await all();
    expect(during.removed).toEqual([]);
    expect(during.kept.map((x) => [x.entry.kind, x.entry.name, x.outcome.removed ? '' : x.outcome.why])).toEqual([
      ['kernel', '6.1.0-99-test', held],
    ]);
    expect(await readFile(k.vmlinuz)).toBeTruthy();
    await sb.ctx.scope.close();
    expect((await all()).removed.map((x) => x.entry.name)).toEqual(['6.1.0-99-test']);
  });

  it('keeps the blobs of an image a run has opened, so its layers can still be read', async () => {
    reg = await FakeRegistry.start();
    const img = buildImage({ layers: [gz(await tarOf({ 'a.txt': 'a' }))] });
    reg.push('team/app', 'v1', img);
    const opened = await openSource(`docker://${reg.host}/team/app:v1`, sb.ctx, undefined, {
      cacheDir: sb.cache,
      env: { HOME: sb.input },
    });
    const during = await all();
    expect(during.removed).toEqual([]);
    expect(during.kept.map((x) => x.entry.name).sort()).toEqual(
      [img.manifest, img.config, ...img.layers].map((b) => b.digest).sort(),
    );
    expect(new Set(during.kept.map((x) => (x.outcome.removed ? '' : x.outcome.why)))).toEqual(new Set([held]));
    const layer = await opened.layers[0]!.open();
    let n = 0;
    for await (const c of layer) n += (c as Buffer).length;
    expect(n).toBe(img.layers[0]!.bytes.length);
    await sb.ctx.scope.close();
    expect((await all()).removed).toHaveLength(3);
  });
});
