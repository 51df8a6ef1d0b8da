// Directories: one linear block while the entries fit, htrees of one and two levels beyond, dir_nlink past 65000 subdirectories.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDir, FT_REG, recLen, type DirEntry } from '../../../src/disk/ext4/dir.js';
import { DirHasher } from '../../../src/disk/ext4/dirhash.js';
import type { Node } from '../../../src/rootfs/tree.js';
import { debugfs, debugfsBatch, dir, expectClean, meta, tmp, writeImage } from './helpers.js';

const t = tmp();
afterAll(() => t.done());

const fifo = (): Node => ({ kind: 'fifo', meta: meta(0o644) });

/** Names that exactly fill one 4084-byte leaf after "." and "..": 12-byte records. */
function fillOneBlock(): string[] {
  const names: string[] = [];
  let used = 24;
  for (let i = 0; used + recLen(4) <= 4084; i++, used += recLen(4)) names.push(String(i).padStart(4, '0'));
  return names;
}

describe('directories', () => {
  let img: string;
  const exact = fillOneBlock();
  const bigNames: string[] = [];
  beforeAll(async () => {
    img = t.path('dirs.img');
    const big = new Map<string, Node>();
    for (let i = 0; i < 100_000; i++) {
      const name = i < 65_001 ? `subdirectory-number-${i}` : `entry-with-a-longer-name-${i}`;
      bigNames.push(name);
      big.set(name, i < 65_001 ? dir() : fifo());
    }
    const mid = new Map<string, Node>();
    for (let i = 0; i < 5000; i++) mid.set(`f${i}`, fifo());
    await writeImage(
      img,
      () =>
        dir({
          exact: dir(Object.fromEntries(exact.map((n) => [n, fifo()]))),
          overflow: dir(Object.fromEntries([...exact, 'more'].map((n) => [n, fifo()]))),
          mid: dir(mid),
          big: dir(big),
        }),
      { sizeBytes: 512 << 20, inodeCount: 110_000 },
    );
  });

  it('pass e2fsck, which checks every htree hash range, limit, count and checksum', () => expectClean(img));

  it('stay linear while the entries fit one block, and become an htree past it', () => {
    expect(debugfs(img, 'stat /exact')).toMatch(/Flags: 0x80000\n/);
    expect(debugfs(img, 'stat /exact')).toMatch(/Size: 4096\n/);
    expect(debugfs(img, 'stat /overflow')).toMatch(/Flags: 0x81000\n/);
    expect(debugfs(img, 'htree_dump /mid')).toMatch(/Indirect levels: 0\n/);
  });

  it('index 100,000 entries in two levels, and count a directory with more than 65000 subdirectories as 1 link', () => {
    const dump = debugfs(img, 'htree_dump /big');
    expect(dump).toMatch(/Hash Version: 1\n/);
    expect(dump).toMatch(/Indirect levels: 1\n/);
    expect(debugfs(img, 'stat /big')).toMatch(/Links: 1 /);
    const ls = debugfs(img, 'ls -p /big');
    // ls -p also prints the empty entry that covers each dx node block (inode 0).
    expect(ls.split('\n').filter((l) => /^\/[1-9]/.test(l)).length).toBe(100_000 + 2);
    const picks = [0, 1, 65_000, 65_001, 99_999, 12_345, 77_777].map((i) => bigNames[i]!);
    const out = debugfsBatch(
      img,
      picks.map((n) => `stat /big/${n}`),
    );
    expect(out.match(/^Inode: \d+/gm)?.length).toBe(picks.length);
    expect(debugfs(img, 'stat /big/subdirectory-number-7')).toMatch(/Links: 2 /);
  });
});

describe('htree leaves', () => {
  it('mark a leaf that continues a run of equal hashes with the low bit of its index hash', () => {
    const hasher = { hash: () => 0x12345678 } as unknown as DirHasher;
    const children: DirEntry[] = Array.from({ length: 600 }, (_, i) => ({
      name: `same-hash-${i}`,
      ino: 100 + i,
      type: FT_REG,
    }));
    const d = buildDir(50, 2, children, hasher, 0);
    expect(d.indexed).toBe(true);
    const root = d.blocks[0]!;
    const count = root.readUInt16LE(34);
    expect(count).toBe(d.blocks.length - 1);
    expect(root.readUInt32LE(36)).toBe(1);
    for (let i = 1; i < count; i++) expect(root.readUInt32LE(32 + 8 * i)).toBe(0x12345679);
  });

  it('hash names with the signed-char variant mke2fs selects on x86', () => {
    const seed = Buffer.from('11111111222243338444555555555555', 'hex');
    const signed = new DirHasher(seed, true).hash(Buffer.from('\xe9', 'latin1'));
    const unsigned = new DirHasher(seed, false).hash(Buffer.from('\xe9', 'latin1'));
    expect(signed).not.toBe(unsigned);
    expect(new DirHasher(seed, true).hash(Buffer.from('ascii'))).toBe(
      new DirHasher(seed, false).hash(Buffer.from('ascii')),
    );
  });
});
