// File contents: streaming, holes, extent trees deeper than the inode's four, files past 4 GiB, reuse of released blocks, copies.
import { createHash } from 'node:crypto';
import { openSync, readSync, closeSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Img2vmError } from '../../../src/core/errors.js';
import { Ext4Writer, MemoryStore } from '../../../src/disk/ext4/index.js';
import { RawFileTarget } from '../../../src/disk/target.js';
import {
  catFile,
  chunksOf,
  debugfs,
  dir,
  EPOCH,
  expectClean,
  file,
  SEED,
  tmp,
  UUID,
  writeImage,
  expectFailure,
  rejection,
} from './helpers.js';

const t = tmp();
afterAll(() => t.done());

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A buffer of `blocks` 4 KiB blocks where only the blocks in `data` are non-zero. */
function sparse(blocks: number, data: (i: number) => boolean, tail = 0): Buffer {
  const b = Buffer.alloc(blocks * 4096 + tail);
  for (let i = 0; i < blocks; i++) if (data(i)) b.fill((i % 251) + 1, i * 4096, i * 4096 + 4096);
  if (tail) b.fill(7, blocks * 4096);
  return b;
}

describe('file contents', () => {
  it('keep holes as holes, with extent trees of one and two levels', async () => {
    const img = t.path('sparse.img');
    const small = sparse(20, (i) => i % 2 === 0); // 10 extents: one leaf block
    const big = sparse(3000, (i) => i % 2 === 0); // 1500 extents: 5 leaves under an index block
    const tailHole = Buffer.concat([sparse(4, () => true), Buffer.alloc(3 * 4096 + 5)]);
    const allZero = Buffer.alloc(10 * 4096 + 1);
    await writeImage(img, async (w) =>
      dir({
        small: file(await w.put(chunksOf(small, 1000), small.length), small.length),
        big: file(await w.put(chunksOf(big, 65536), big.length), big.length),
        tailhole: file(await w.put(chunksOf(tailHole, 4097), tailHole.length), tailHole.length),
        zeros: file(await w.put(chunksOf(allZero, 1), allZero.length), allZero.length),
      }),
    );
    expectClean(img);
    expect(sha(catFile(img, '/small'))).toBe(sha(small));
    expect(sha(catFile(img, '/big'))).toBe(sha(big));
    expect(sha(catFile(img, '/tailhole'))).toBe(sha(tailHole));
    expect(sha(catFile(img, '/zeros'))).toBe(sha(allZero));
    // Blockcount: data blocks plus extent-tree blocks, in 512-byte units.
    expect(debugfs(img, 'stat /small')).toMatch(/Blockcount: 88\b/); // 10 + 1 leaf
    expect(debugfs(img, 'stat /big')).toMatch(/Blockcount: 12048\b/); // 1500 + 5 leaves + 1 index
    expect(debugfs(img, 'stat /zeros')).toMatch(/Blockcount: 0\b/);
    const ex = debugfs(img, 'ex /big');
    expect(ex).toMatch(/^ 0\/ 2 +1\/ +1 /m);
    expect(ex).toMatch(/^ 2\/ 2 +1\/340 /m);
  });

  it('accept any chunking, and refuse content shorter or longer than declared', async () => {
    const img = t.path('chunks.img');
    const data = Buffer.from(Buffer.alloc(100_003).map((_, i) => (i * 13) & 0xff));
    const target = new RawFileTarget(img);
    const w = new Ext4Writer({ target, offset: 0, uuid: UUID, label: '', hashSeed: SEED, epoch: EPOCH });
    const sizes = [1, 4095, 4096, 4097, 8191, 100_003];
    const refs = await Promise.all(sizes.map((s) => w.put(chunksOf(data, s), data.length)));
    expectFailure(
      await rejection(w.put(chunksOf(data, 4096), data.length + 1)),
      'badImage',
      /ended after 100003 of its declared 100004/,
    );
    expectFailure(
      await rejection(w.put(chunksOf(data, 4096), data.length - 1)),
      'badImage',
      /longer than its declared 100002/,
    );
    const root = dir(Object.fromEntries(refs.map((r, i) => [`f${sizes[i]}`, file(r, data.length)])));
    await w.finish(root, { sizeBytes: 32 << 20, inodeCount: 1024 });
    target.close();
    expectClean(img);
    for (const s of sizes) expect(sha(catFile(img, `/f${s}`)), `chunks of ${s}`).toBe(sha(data));
  });

  it('write data from the front, many small files in few writes', async () => {
    const img = t.path('batch.img');
    const n = 2000;
    const { summary } = await writeImage(
      img,
      (w) => {
        const entries: Record<string, ReturnType<typeof file>> = {};
        for (let i = 0; i < n; i++) {
          const b = Buffer.alloc(3000, i & 0xff || 1);
          entries[`f${i}`] = file(w.putBuffer(b), b.length);
        }
        return dir(entries);
      },
      { sizeBytes: 64 << 20 },
    );
    expectClean(img);
    expect(debugfs(img, 'stat /f0')).toMatch(/EXTENTS:\n\(0\):257\n/);
    expect(debugfs(img, 'stat /f1')).toMatch(/EXTENTS:\n\(0\):258\n/);
    // 2000 files in 8 MiB batches, plus the metadata: far fewer writes than files.
    expect(summary.writes).toBeLessThan(40);
  });

  it('reuse released blocks and zero those that stay free', async () => {
    const img = t.path('release.img');
    const secret = Buffer.alloc(64 * 4096, 0x5a);
    await writeImage(img, async (w) => {
      const a = w.putBuffer(secret);
      const b = w.putBuffer(Buffer.alloc(4096, 0x11));
      w.release(a);
      w.release(a); // twice is harmless
      const c = w.putBuffer(Buffer.alloc(3 * 4096, 0x22)); // takes the lowest freed blocks
      w.putBuffer(Buffer.alloc(10 * 4096, 0x5a)); // stored, never used, never released: freed at finish
      return dir({ b: file(b, 4096), c: file(c, 3 * 4096) });
    });
    expectClean(img);
    expect(debugfs(img, 'stat /c')).toMatch(/EXTENTS:\n\(0-2\):257-259\n/);
    expect(catFile(img, '/c').equals(Buffer.alloc(3 * 4096, 0x22))).toBe(true);
    // The released file's blocks hold metadata now or are zeroed: its bytes are nowhere in the image.
    const fd = openSync(img, 'r');
    const raw = Buffer.alloc(80 * 4096);
    readSync(fd, raw, 0, raw.length, 257 * 4096);
    closeSync(fd);
    const stale = Buffer.alloc(4096, 0x5a);
    for (let i = 0; i < 80; i++)
      expect(raw.subarray(i * 4096, i * 4096 + 4096).equals(stale), `block ${257 + i}`).toBe(false);
    // Every block of that range the bitmap calls free is zero; the in-use ones are metadata now.
    const free = [...debugfs(img, 'testb 257 80').matchAll(/Block (\d+) not in use/g)].map((m) => Number(m[1]));
    expect(free.length).toBeGreaterThan(50);
    for (const b of free)
      expect(raw.subarray((b - 257) * 4096, (b - 256) * 4096).equals(Buffer.alloc(4096)), `free block ${b}`).toBe(true);
  });

  it('copy content of other stores in at finish, and give a ref used by two nodes two copies', async () => {
    const img = t.path('copies.img');
    const mem = new MemoryStore();
    const gen = Buffer.from('written by img2vm\n');
    const big = sparse(50, (i) => i % 3 === 0, 17);
    const memRef = mem.putBuffer(gen);
    const memBig = await mem.put(chunksOf(big, 9999), big.length);
    await writeImage(img, (w) => {
      const ours = w.putBuffer(Buffer.from('shared bytes, two inodes\n'));
      return dir({
        hostname: file(memRef, gen.length),
        bigcopy: file(memBig, big.length),
        one: file(ours, 25),
        two: file(ours, 25),
      });
    });
    expectClean(img);
    expect(catFile(img, '/hostname').equals(gen)).toBe(true);
    expect(sha(catFile(img, '/bigcopy'))).toBe(sha(big));
    expect(catFile(img, '/two').toString()).toBe('shared bytes, two inodes\n');
    const blk = (p: string): string => /EXTENTS:\n\(0\):(\d+)/.exec(debugfs(img, `stat ${p}`))![1]!;
    expect(blk('/one')).not.toBe(blk('/two'));
    expect(debugfs(img, 'stat /bigcopy')).toMatch(/Blockcount: 152\b/); // 17 data blocks + the tail block + a leaf for 18 extents, holes kept
  });

  it('store files larger than 4 GiB (size_high, logical blocks past 2^20)', async () => {
    const img = t.path('huge.img');
    const size = 4 * 2 ** 30 + 8192 + 100;
    const mark = Buffer.alloc(4096, 0xab);
    async function* content(): AsyncIterable<Uint8Array> {
      yield mark;
      const zero = Buffer.alloc(1 << 20);
      let left = size - 4096 - 8192 - 100;
      while (left > 0) {
        const n = Math.min(left, zero.length);
        yield zero.subarray(0, n);
        left -= n;
      }
      yield Buffer.alloc(8192 + 100, 0xcd);
    }
    await writeImage(img, async (w) => dir({ huge: file(await w.put(content(), size), size) }));
    expectClean(img);
    const st = debugfs(img, 'stat /huge');
    expect(st).toMatch(new RegExp(`Size: ${size}\\b`));
    expect(st).toMatch(/\(0\):257, \(1048576-1048578\):258-260/);
    expect(debugfs(img, 'stat /huge')).toMatch(/Blockcount: 32\b/);
  });

  it('refuse content past maxBytes with sizeTooSmall, and file sizes ext4 cannot hold', async () => {
    const target = new RawFileTarget(t.path('max.img'));
    const w = new Ext4Writer({
      target,
      offset: 0,
      maxBytes: 2 << 20,
      uuid: UUID,
      label: '',
      hashSeed: SEED,
      epoch: EPOCH,
    });
    w.putBuffer(Buffer.alloc(200 * 4096, 1));
    const err = await w.put(chunksOf(Buffer.alloc(400 * 4096, 2), 65536), 400 * 4096).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Img2vmError);
    expectFailure(
      err,
      'sizeTooSmall',
      /file contents alone need more than the root file system's 2M: 800K are stored and a file of 1\.6M does not fit/,
    );
    expect(() => w.putBuffer(Buffer.alloc(300 * 4096, 3))).toThrow(/need more than/);
    expectFailure(await rejection(w.put(chunksOf(Buffer.alloc(0), 1), 2 ** 60)), 'badImage', /./);
    target.close();
  });
});
