// A FIFO or device where an OCI layout (or the blob cache) keeps a blob can neither block img2vm nor be read.
import { execa } from 'execa';
import { mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobCache } from '../../src/source/blob-cache.js';
import { openStore } from '../../src/store/index.js';
import { openSource } from '../../src/source/index.js';
import { buildImage, gz, imageBlobs, tarOf, writeLayout, type BuiltImage } from '../../fixtures/hostile/images.js';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await sandbox();
});
afterEach(async () => {
  await sb.close();
});

async function layout(): Promise<{ dir: string; img: BuiltImage }> {
  const img = buildImage({ layers: [gz(await tarOf({ 'a.txt': 'a' }))] });
  const dir = join(sb.input, 'layout');
  await writeLayout(dir, [{ top: img.manifest, tag: 'v1' }], imageBlobs(img));
  return { dir, img };
}

const blobPath = (dir: string, digest: string) => join(dir, 'blobs', 'sha256', digest.slice(7));

async function mkfifo(path: string): Promise<void> {
  await rm(path, { force: true });
  await execa('mkfifo', [path]);
}

describe('oci: layouts with special files at blob paths', () => {
  it('a FIFO as the config blob is refused at once, unread (a blocking open would hang here)', async () => {
    const { dir, img } = await layout();
    await mkfifo(blobPath(dir, img.config.digest));
    await expect(openSource(`oci:${dir}:v1`, sb.ctx)).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/blob sha256:[0-9a-f]+ is not a regular file$/),
    });
  });

  it('a FIFO as a layer blob, and as index.json', async () => {
    const { dir, img } = await layout();
    await mkfifo(blobPath(dir, img.layers[0]!.digest));
    await expect(openSource(`oci:${dir}:v1`, sb.ctx)).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/not a regular file/),
    });
    await mkfifo(join(dir, 'index.json'));
    await expect(openSource(`oci:${dir}:v1`, sb.ctx)).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/index\.json is not a regular file/),
    });
  });

  it('a device, or a link to one, is not read', async () => {
    const { dir, img } = await layout();
    await rm(blobPath(dir, img.manifest.digest));
    await symlink('/dev/zero', blobPath(dir, img.manifest.digest));
    await expect(openSource(`oci:${dir}:v1`, sb.ctx)).rejects.toMatchObject({
      message: expect.stringMatching(/is a symbolic link/),
    });
    await rm(join(dir, 'index.json'));
    await symlink('/dev/zero', join(dir, 'index.json'));
    await expect(openSource(`oci:${dir}:v1`, sb.ctx)).rejects.toMatchObject({
      message: expect.stringMatching(/index\.json is not a regular file/),
    });
  });
});

describe('blob cache', () => {
  it('a FIFO planted under a digest reads as absent, never blocking', async () => {
    const cache = new BlobCache(openStore(sb.cache));
    const digest = `sha256:${'ab'.repeat(32)}`;
    await mkdir(cache.blobs, { recursive: true });
    await mkfifo(cache.pathOf(digest));
    expect(await cache.read(digest, 1024)).toBeUndefined();
    expect(await cache.verify(digest, 0)).toBe(false);
    const s = cache.open(digest, 0, 'blob');
    await expect(new Promise((resolve, reject) => s.on('error', reject).on('end', resolve).resume())).rejects.toThrow(
      /not a regular file/,
    );
  });
});
