// The journal (inode 8, jbd2 v2 with checksum v3, its backup in the superblock) and growth with resize2fs via the resize inode.
import { truncateSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { catFile, debugfs, dir, expectClean, file, run, tmp, writeImage } from './helpers.js';

const t = tmp();
afterAll(() => t.done());
const MiB = 1024 * 1024;

function dumpe2fsHeader(img: string): string {
  const r = run('dumpe2fs', ['-h', img]);
  expect(r.status, r.out).toBe(0);
  return r.out;
}

describe('journal', () => {
  it('is inode 8, empty, with 64-bit tags and checksum v3, backed up in s_jnl_blocks', async () => {
    const img = t.path('j.img');
    await writeImage(img, () => dir(), { sizeBytes: 64 * MiB });
    expectClean(img);
    const h = dumpe2fsHeader(img);
    expect(h).toMatch(/Journal inode: +8\n/);
    expect(h).toMatch(/Journal backup: +inode blocks\n/);
    expect(h).toMatch(/Journal features: +journal_64bit journal_checksum_v3\n/);
    expect(h).toMatch(/Total journal size: +16M\n/);
    expect(h).toMatch(/Journal start: +0\n/);
    expect(h).toMatch(/Journal checksum type: +crc32c\n/);
    const st = debugfs(img, 'stat <8>');
    expect(st).toMatch(/Mode: {2}0600/);
    expect(st).toMatch(/EXTENTS:\n\(0-4095\):\d+-\d+\n/);
  });

  it('is sized 16, 32 or 64 MiB by the file-system size, or as asked', async () => {
    for (const [size, want] of [
      [511 * MiB, '16M'],
      [512 * MiB, '32M'],
      [2048 * MiB, '64M'],
    ] as const) {
      const img = t.path(`j${size}.img`);
      await writeImage(img, () => dir(), { sizeBytes: size });
      expect(dumpe2fsHeader(img)).toMatch(new RegExp(`Total journal size: +${want}\\n`));
    }
    const img = t.path('jcustom.img');
    const { summary } = await writeImage(img, () => dir(), { sizeBytes: 3000 * MiB, journalBytes: 200 * MiB });
    expect(summary.journalBytes).toBe(200 * MiB);
    expectClean(img);
    expect(dumpe2fsHeader(img)).toMatch(/Total journal size: +200M\n/);
    expect(debugfs(img, 'stat <8>')).toMatch(
      /EXTENTS:\n\(0-16383\):\d+-\d+, \(16384-32767\):\d+-\d+, \(32768-49151\):\d+-\d+, \(49152-51199\):\d+-\d+\n/,
    );
  });
});

describe('resize inode', () => {
  it('reserves descriptor blocks so resize2fs can grow the file system offline', async () => {
    const img = t.path('grow.img');
    const data = Buffer.from(Buffer.alloc(3 * MiB).map((_, i) => (i * 31) & 0xff));
    const { summary } = await writeImage(img, (w) => dir({ keep: file(w.putBuffer(data), data.length) }), {
      sizeBytes: 256 * MiB,
    });
    expect(summary.reservedGdtBlocks).toBe(255);
    expectClean(img);
    expect(dumpe2fsHeader(img)).toMatch(/Reserved GDT blocks: +255\n/);
    // 256 MiB (2 groups, 1 descriptor block) to 40 GiB (320 groups, 5 descriptor blocks).
    truncateSync(img, 40 * 1024 * MiB);
    const r = run('resize2fs', [img, '40G']);
    expect(r.status, r.out).toBe(0);
    expectClean(img);
    const h = dumpe2fsHeader(img);
    expect(h).toMatch(/Block count: +10485760\n/);
    expect(h).toMatch(/Reserved GDT blocks: +251\n/);
    expect(catFile(img, '/keep').equals(data)).toBe(true);
  });
});
