// OCI layouts and archives: choosing by tag or platform, nested indexes, archives equal to their directories, and docker-save layer checks.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSource } from '../../src/source/index.js';
import {
  buildImage,
  buildIndex,
  gz,
  imageBlobs,
  sha256,
  tarDirectory,
  tarOf,
  writeLayout,
  type BuiltImage,
} from '../../fixtures/hostile/images.js';
import { flatten, listTree, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await sandbox();
});
afterEach(async () => {
  await sb.close();
});

async function img(marker: string, platform?: BuiltImage['platform']): Promise<BuiltImage> {
  return buildImage({
    layers: [
      gz(await tarOf({ 'etc/': { dir: true }, [`etc/${marker}`]: marker })),
      await tarOf({ [`${marker}.txt`]: 'x' }),
    ],
    platform,
  });
}

async function files(ref: string, o = {}): Promise<string[]> {
  const image = await openSource(ref, sb.ctx, undefined, o);
  const root = join(sb.work, `r${Math.random().toString(36).slice(2)}`);
  await flatten(image, root);
  return listTree(root);
}

describe('oci: layouts', () => {
  it('picks an image by its ref.name tag, and lists the tags when it is missing or ambiguous', async () => {
    const a = await img('a');
    const b = await img('b');
    const dir = join(sb.input, 'layout');
    await writeLayout(
      dir,
      [
        { top: a.manifest, tag: 'v1' },
        { top: b.manifest, tag: 'v2' },
      ],
      [...imageBlobs(a), ...imageBlobs(b)],
    );
    expect(await files(`oci:${dir}:v2`)).toEqual(['b.txt', 'etc', 'etc/b']);
    expect((await openSource(`oci:${dir}:v1`, sb.ctx)).id).toBe(a.config.digest);
    await expect(openSource(`oci:${dir}:v3`, sb.ctx)).rejects.toMatchObject({
      kind: 'imageNotFound',
      hint: 'it has: v1, v2',
    });
    await expect(openSource(`oci:${dir}`, sb.ctx)).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/holds 2 images/),
      hint: expect.stringMatching(/v1, v2/),
    });
  });

  it('opens the only image of an untagged layout', async () => {
    const a = await img('a');
    const dir = join(sb.input, 'layout');
    await writeLayout(dir, [{ top: a.manifest }], imageBlobs(a));
    const got = await openSource(`oci:${dir}`, sb.ctx);
    expect(got.transport).toBe('oci');
    expect(got.configBytes?.equals(a.config.bytes)).toBe(true);
    expect(got.layers.map((l) => [l.digest, l.size])).toEqual(a.layers.map((l) => [l.digest, l.size]));
  });

  it('descends through nested indexes to the platform asked for', async () => {
    const amd = await img('amd', { os: 'linux', architecture: 'amd64' });
    const arm = await img('arm', { os: 'linux', architecture: 'arm64', variant: 'v8' });
    const inner = buildIndex([amd, arm]);
    const outer = buildIndex([]);
    const outerJson = JSON.parse(outer.bytes.toString());
    outerJson.manifests.push({ mediaType: inner.mediaType, digest: inner.digest, size: inner.size });
    const outerBlob = { ...outer, bytes: Buffer.from(JSON.stringify(outerJson)) };
    outerBlob.digest = sha256(outerBlob.bytes);
    outerBlob.size = outerBlob.bytes.length;
    const dir = join(sb.input, 'layout');
    await writeLayout(
      dir,
      [{ top: outerBlob, tag: 'multi' }],
      [...imageBlobs(amd), ...imageBlobs(arm), inner, outerBlob],
    );
    // The outer index has one (platform-less) entry: the nested index; the platform is chosen there.
    expect((await openSource(`oci:${dir}:multi`, sb.ctx, undefined, { platform: 'linux/arm64' })).id).toBe(
      arm.config.digest,
    );
    expect((await openSource(`oci:${dir}:multi`, sb.ctx, undefined, { platform: 'linux/amd64' })).id).toBe(
      amd.config.digest,
    );
    await expect(openSource(`oci:${dir}:multi`, sb.ctx, undefined, { platform: 'linux/riscv64' })).rejects.toThrow(
      /no image for linux\/riscv64/,
    );
  });

  it('chooses by platform among untagged per-platform entries of index.json', async () => {
    const amd = await img('amd', { os: 'linux', architecture: 'amd64' });
    const arm = await img('arm', { os: 'linux', architecture: 'arm64' });
    const dir = join(sb.input, 'layout');
    await writeLayout(
      dir,
      [
        { top: amd.manifest, platform: amd.platform },
        { top: arm.manifest, platform: arm.platform },
      ],
      [...imageBlobs(amd), ...imageBlobs(arm)],
    );
    expect((await openSource(`oci:${dir}`, sb.ctx, undefined, { platform: 'linux/arm64' })).id).toBe(arm.config.digest);
  });

  it('says clearly when the directory is not a layout', async () => {
    await expect(openSource(`oci:${join(sb.input, 'nope')}`, sb.ctx)).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/does not exist/),
    });
    await mkdir(join(sb.input, 'empty'));
    await expect(openSource(`oci:${join(sb.input, 'empty')}`, sb.ctx)).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/no index\.json/),
    });
  });
});

describe('oci-archive:', () => {
  it('reads the same image as the layout it was made from', async () => {
    const a = await img('a');
    const dir = join(sb.input, 'layout');
    await writeLayout(dir, [{ top: a.manifest, tag: 'latest' }], imageBlobs(a));
    const file = join(sb.input, 'a.tar');
    await writeFile(file, await tarDirectory(dir));
    const fromDir = await files(`oci:${dir}`);
    expect(await files(`oci-archive:${file}:latest`)).toEqual(fromDir);
    const got = await openSource(`oci-archive:${file}`, sb.ctx);
    expect(got.transport).toBe('oci-archive');
    expect(got.id).toBe(a.config.digest);
    await expect(openSource(`oci-archive:${join(sb.input, 'missing.tar')}`, sb.ctx)).rejects.toMatchObject({
      kind: 'imageNotFound',
    });
  });
});

describe('docker-archive: layer checks', () => {
  async function saveArchive(tamper: boolean): Promise<string> {
    const layer = await tarOf({ 'hello.txt': 'hello\n' });
    const dir = join(sb.input, `save-${tamper}`);
    await mkdir(join(dir, 'abc'), { recursive: true });
    const cfg = JSON.stringify({
      os: 'linux',
      architecture: 'amd64',
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
    });
    await writeFile(join(dir, `${sha256(cfg).slice(7)}.json`), cfg);
    const stored = Buffer.from(layer);
    if (tamper) stored.write('jello', 512, 'latin1');
    await writeFile(join(dir, 'abc', 'layer.tar'), stored);
    await writeFile(
      join(dir, 'manifest.json'),
      JSON.stringify([{ Config: `${sha256(cfg).slice(7)}.json`, RepoTags: ['x:1'], Layers: ['abc/layer.tar'] }]),
    );
    const file = join(sb.input, `save-${tamper}.tar`);
    await writeFile(file, await tarDirectory(dir));
    return file;
  }

  it('checks an uncompressed legacy layer.tar against its diff_id', async () => {
    const good = await openSource(`docker-archive:${await saveArchive(false)}`, sb.ctx);
    expect(good.layers[0]!.digest).toMatch(/^sha256:/);
    expect(good.configBytes).toBeDefined();
    await flatten(good, join(sb.work, 'good'));
    expect(await readFile(join(sb.work, 'good', 'hello.txt'), 'utf8')).toBe('hello\n');
    const bad = await openSource(`docker-archive:${await saveArchive(true)}`, sb.ctx);
    await expect(flatten(bad, join(sb.work, 'bad'))).rejects.toThrow(/does not match its digest/);
  });
});
