// The caps on what the tree holds (entries, name bytes, xattr bytes), made small here so a test can reach them; bench/entries.mjs measures the real ones.
import { describe, expect, it, vi } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { makeTar, type Ent } from './helpers.js';
import { flattenLayers, paths } from './layers-helpers.js';

vi.mock('../../src/rootfs/limits.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../src/rootfs/limits.js')>()),
  maxEntries: () => 100,
  MAX_NAME_BYTES: 20_000,
  MAX_TOTAL_XATTR_BYTES: 50_000,
}));

async function refused(layers: Buffer[], re: RegExp): Promise<void> {
  const e = await flattenLayers(layers).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(Img2vmError);
  expect((e as Img2vmError).kind).toBe('badImage');
  expect((e as Img2vmError).message).toMatch(re);
  expect((e as Img2vmError).hint).toMatch(/make the image smaller/);
}

const files = (dir: string, n: number, from = 0): Ent[] =>
  Array.from({ length: n }, (_, i) => ({ name: `${dir}/f${from + i}`, content: '' }));

describe('MAX_ENTRIES', () => {
  it('100 names fit; the 101st refuses the image, naming the limit and where', async () => {
    const { root } = await flattenLayers([await makeTar(files('d', 99))]); // and d itself
    expect(paths(root)).toHaveLength(100);
    await refused(
      [await makeTar(files('d', 100))],
      /more than 100 files, directories and links \(at "d\/f99" in layer 1\); the limit MAX_ENTRIES is 100/,
    );
  });

  it('counts what the tree holds, not what the layers carried: whiteouts and overwrites give names back', async () => {
    const { root } = await flattenLayers([
      await makeTar(files('a', 60)),
      await makeTar([{ name: '.wh.a', content: '' }, ...files('b', 60)]),
      await makeTar([...files('b', 30), { name: 'b/.wh..wh..opq', content: '' }, ...files('b', 30, 30)]),
    ]);
    expect(paths(root)).toHaveLength(61);
  });

  it('hard links count once per name', async () => {
    const links: Ent[] = Array.from({ length: 100 }, (_, i) => ({ name: `l${i}`, type: 'link', linkname: 'f' }));
    await refused([await makeTar([{ name: 'f', content: 'x' }, ...links])], /MAX_ENTRIES/);
  });
});

describe('MAX_NAME_BYTES', () => {
  it('symlink targets count: five of 4000 bytes refuse the image', async () => {
    const links: Ent[] = Array.from({ length: 5 }, (_, i) => ({
      name: `s${i}`,
      type: 'symlink',
      linkname: `${'t'.repeat(200)}/`.repeat(20),
    }));
    await refused(
      [await makeTar(links)],
      /names and symlink targets take more than 20000 bytes .*the limit MAX_NAME_BYTES is 20,000/,
    );
  });
});

describe('MAX_TOTAL_XATTR_BYTES', () => {
  it('distinct attributes add up and refuse the image', async () => {
    const ents: Ent[] = Array.from({ length: 20 }, (_, i) => ({
      name: `f${i}`,
      content: '',
      pax: { 'SCHILY.xattr.user.v': `${i}`.padEnd(3000, 'x') },
    }));
    await refused(
      [await makeTar(ents)],
      /extended attributes take more than 50000 bytes of memory .*the limit MAX_TOTAL_XATTR_BYTES is 50,000/,
    );
  });

  it('the same attributes on many files are held, and counted, once', async () => {
    const ents: Ent[] = Array.from({ length: 90 }, (_, i) => ({
      name: `f${i}`,
      content: '',
      pax: { 'SCHILY.xattr.user.v': ''.padEnd(500, 'x') },
    }));
    const { root } = await flattenLayers([await makeTar(ents)]);
    expect(paths(root)).toHaveLength(90);
  });
});
