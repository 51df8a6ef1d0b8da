// The ext4 directory hash against e2fsprogs: debugfs dx_hash on the seed img2vm writes.
import { afterAll, describe, expect, it } from 'vitest';
import { DirHasher } from '../../../src/disk/ext4/dirhash.js';
import { parseUuid } from '../../../src/disk/ext4/writer.js';
import { debugfsBatch, dir, SEED, tmp, writeImage } from './helpers.js';

const t = tmp();
afterAll(() => t.done());

describe('directory hash', () => {
  it('agrees with debugfs dx_hash (signed half_md4, the seed) on ASCII, long and high-byte names', async () => {
    const img = t.path('hash.img');
    await writeImage(img, () => dir());
    const names = [
      'a',
      'hello',
      'x'.repeat(31),
      'y'.repeat(32),
      'z'.repeat(33),
      'n'.repeat(255),
      'caf\xe9',
      '\xff\xfe\x80',
      'mixed-\x81name.txt',
    ];
    const out = debugfsBatch(
      img,
      names.map((n) => `dx_hash -h half_md4 -s ${SEED} "${n}"`),
    );
    const got = [...out.matchAll(/Hash of .* is 0x([0-9a-f]+)/g)].map((m) => parseInt(m[1]!, 16));
    const h = new DirHasher(parseUuid(SEED, 'seed'), true);
    expect(got).toHaveLength(names.length);
    expect(names.map((n) => h.hash(Buffer.from(n, 'latin1')))).toEqual(got);
  });
});
