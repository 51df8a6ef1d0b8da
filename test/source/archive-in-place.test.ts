// Image archives are read where their members lie: nothing is unpacked (a work directory that cannot be written is
// no obstacle, a terabyte member is never copied), and every member is still checked against its digest.
import { mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildImage, gz, imageBlobs, tarDirectory, tarOf, writeLayout } from '../../fixtures/hostile/images.js';
import type { RunContext } from '../../src/core/context.js';
import { findMember, indexArchive } from '../../src/source/archive-index.js';
import { openSource } from '../../src/source/index.js';
import { flatten, listTree, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
beforeEach(async () => {
  sb = await sandbox();
});
afterEach(async () => {
  await sb.close();
});

const TiB = 2 ** 40;

/** A ustar header for a regular file of size bytes, the size in base-256 (as GNU tar writes sizes past 8 GiB). */
function bigHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h[124] = 0x80;
  h.writeBigUInt64BE(BigInt(size), 124 + 4);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\x0000', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** An archive file: a member of `junk` bytes first (a hole on disk: the file is sparse), then the tar in `rest`. */
async function withHugeMember(file: string, junk: number, rest: Buffer): Promise<void> {
  const fh = await open(file, 'w');
  try {
    await fh.write(bigHeader('junk', junk), 0, 512, 0);
    await fh.write(rest, 0, rest.length, 512 + junk);
  } finally {
    await fh.close();
  }
}

/** A run context whose work directory is a regular file: anything written below it fails (ENOTDIR). */
async function unwritableWork(): Promise<RunContext> {
  const work = join(sb.root, 'work-is-a-file');
  await writeFile(work, '');
  return { ...sb.ctx, work };
}

async function layoutTar(tamper = false): Promise<{ tar: Buffer; digest: string }> {
  const img = buildImage({
    layers: [gz(await tarOf({ 'etc/': { dir: true }, 'etc/hello': 'hello\n' })), await tarOf({ 'b.txt': 'b' })],
  });
  const dir = join(sb.input, `layout-${tamper}`);
  const blobs = imageBlobs(img);
  await writeLayout(dir, [{ top: img.manifest, tag: 'latest' }], blobs);
  if (tamper) {
    const layer = img.layers[1]!;
    const bytes = Buffer.from(layer.bytes);
    bytes.write('c', 512, 'latin1');
    await writeFile(join(dir, 'blobs', 'sha256', layer.digest.slice(7)), bytes);
  }
  return { tar: await tarDirectory(dir), digest: img.config.digest };
}

describe('image archives read in place', () => {
  it('an oci-archive with a 1 TiB member opens and flattens with no work directory to write to', async () => {
    const { tar, digest } = await layoutTar();
    const file = join(sb.input, 'huge.tar');
    await withHugeMember(file, TiB, tar);
    const ctx = await unwritableWork();
    const img = await openSource(`oci-archive:${file}:latest`, ctx);
    expect(img.id).toBe(digest);
    expect(img.workDir).toBeUndefined();
    const out = join(sb.root, 'out');
    await flatten(img, join(out, 'root'));
    expect(await listTree(join(out, 'root'))).toEqual(['b.txt', 'etc', 'etc/hello']);
    // The index knows the member and where it lies without having read it.
    const a = await indexArchive(file);
    expect(findMember(a, 'junk')).toEqual({ kind: 'file', offset: 512, size: TiB });
    expect(await readdir(sb.work)).toEqual([]);
  });

  it('a tampered layer in an archive read in place is refused by its digest', async () => {
    const { tar } = await layoutTar(true);
    const file = join(sb.input, 'tampered.tar');
    await writeFile(file, tar);
    const img = await openSource(`oci-archive:${file}`, await unwritableWork());
    await expect(flatten(img, join(sb.root, 'bad'))).rejects.toThrow(/does not match its digest/);
  });

  it('a member that runs past the end of the file is a truncated archive', async () => {
    const { tar } = await layoutTar();
    const file = join(sb.input, 'cut.tar');
    await writeFile(file, Buffer.concat([tar.subarray(0, tar.length - 1024), bigHeader('more', 1 << 20)]));
    await expect(openSource(`oci-archive:${file}`, sb.ctx)).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/truncated: member "more"/),
    });
  });

  it('a docker-archive whose duplicate layer is a symlink (legacy docker save) reads both through it', async () => {
    const layer = await tarOf({ 'x.txt': 'x' });
    const dir = join(sb.input, 'save');
    await mkdir(join(dir, 'l1'), { recursive: true });
    await writeFile(join(dir, 'l1', 'layer.tar'), layer);
    const cfg = JSON.stringify({ os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [] } });
    await writeFile(join(dir, 'c.json'), cfg);
    await writeFile(
      join(dir, 'manifest.json'),
      JSON.stringify([{ Config: 'c.json', RepoTags: ['x:1'], Layers: ['l1/layer.tar', 'l2/layer.tar'] }]),
    );
    const file = join(sb.input, 'save.tar');
    await writeFile(file, await tarDirectory(dir, [{ name: 'l2/layer.tar', linkname: '../l1/layer.tar' }]));
    const img = await openSource(`docker-archive:${file}:x:1`, await unwritableWork());
    expect(img.layers.map((l) => l.size)).toEqual([layer.length, layer.length]);
    await flatten(img, join(sb.root, 'dup'));
    expect(await listTree(join(sb.root, 'dup'))).toEqual(['x.txt']);
  });
});
