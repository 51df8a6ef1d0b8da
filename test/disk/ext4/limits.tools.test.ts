// Sizing and refusals: measure's minimum is enough and checked, hostile trees and impossible sizes fail with clear errors.
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { formatSize } from '../../../src/core/units.js';
import { Ext4Writer, MemoryStore } from '../../../src/disk/ext4/index.js';
import { RawFileTarget } from '../../../src/disk/target.js';
import type { DirNode, Node } from '../../../src/rootfs/tree.js';
import { dir, EPOCH, expectClean, file, meta, SEED, tmp, UUID, expectFailure, rejection } from './helpers.js';

const t = tmp();
afterAll(() => t.done());
const MiB = 1024 * 1024;

function writer(
  path: string,
  extra: { maxBytes?: number; offset?: number } = {},
): { w: Ext4Writer; target: RawFileTarget } {
  const target = new RawFileTarget(path);
  return {
    w: new Ext4Writer({
      target,
      offset: extra.offset ?? 0,
      uuid: UUID,
      label: 'x',
      hashSeed: SEED,
      epoch: EPOCH,
      ...extra,
    }),
    target,
  };
}

/** A tree with data, holes, released blocks, copies from memory, many directories and spilled xattrs. */
function busyTree(w: Ext4Writer): DirNode {
  const mem = new MemoryStore();
  const gone = w.putBuffer(Buffer.alloc(300 * 4096, 9));
  const entries: Record<string, Node> = {};
  for (let i = 0; i < 40; i++) entries[`f${i}`] = file(w.putBuffer(Buffer.alloc(i * 5000 + 1, i + 1)), i * 5000 + 1);
  w.release(gone);
  for (let i = 0; i < 30; i++) entries[`m${i}`] = file(mem.putBuffer(Buffer.alloc(i * 7000, 3)), i * 7000);
  for (let i = 0; i < 200; i++)
    entries[`d${i}`] = dir(
      { x: { kind: 'symlink', meta: meta(0o777), target: 'y'.repeat(100) } },
      meta(0o755, { xattrs: new Map([['user.big', Buffer.alloc(150, 1)]]) }),
    );
  return dir(entries);
}

describe('sizing', () => {
  it('finish accepts measure().minimumBytes and the result is clean; a smaller size is refused with the minimum', async () => {
    const small = writer(t.path('small.img'));
    const m = small.w.measure(busyTree(small.w));
    const min = m.minimumBytes(m.inodes);
    small.target.close();
    expect(m.inodes).toBe(11 + 40 + 30 + 400);

    const a = writer(t.path('min.img'));
    const summary = await a.w.finish(busyTree(a.w), { sizeBytes: min, inodeCount: m.inodes });
    a.target.close();
    expect(summary.sizeBytes).toBe(min);
    expectClean(t.path('min.img'));

    const b = writer(t.path('below.img'));
    const tree = busyTree(b.w);
    const err = await b.w.finish(tree, { sizeBytes: min - MiB, inodeCount: m.inodes }).catch((e: unknown) => e);
    expectFailure(err, 'sizeTooSmall', /too small for the image content: it needs/);
    expect((err as Error).message).toContain(`it needs ${formatSize(min)}`);
    // Refused before writing: the same writer finishes at the minimum.
    await b.w.finish(tree, { sizeBytes: min, inodeCount: m.inodes });
    b.target.close();
    expectClean(t.path('below.img'));
  });

  it('grows the minimum with the inode count, and refuses more inodes than the groups can hold', async () => {
    const { w, target } = writer(t.path('inodes.img'));
    const root = dir({ a: file(w.putBuffer(Buffer.from('a')), 1) });
    const m = w.measure(root);
    expect(m.minimumBytes(1_000_000)).toBeGreaterThan(m.minimumBytes(100) + 200 * MiB);
    expectFailure(
      await rejection(w.finish(root, { sizeBytes: 64 * MiB, inodeCount: 5 })),
      'sizeTooSmall',
      /needs 12 inodes, 5 were planned/,
    );
    target.close();
    const b = writer(t.path('inodes2.img'));
    expectFailure(
      await rejection(b.w.finish(dir(), { sizeBytes: 64 * MiB, inodeCount: 100_000 })),
      'sizeTooSmall',
      /100000 inodes need a root file system of at least/,
    );
    b.target.close();
  });

  it('refuses file systems larger than the design supports', async () => {
    const { w, target } = writer(t.path('huge.img'));
    expectFailure(
      await rejection(w.finish(dir(), { sizeBytes: 3 * 1024 ** 4, inodeCount: 4096 })),
      'usage',
      /up to 2040G/,
    );
    target.close();
  });
});

describe('hostile trees', () => {
  async function refuse(build: (w: Ext4Writer) => DirNode, re: RegExp): Promise<void> {
    const { w, target } = writer(t.path('bad.img'));
    try {
      expectFailure(await rejection(w.finish(build(w), { sizeBytes: 64 * MiB, inodeCount: 70_000 })), 'badImage', re);
    } finally {
      target.close();
    }
  }
  const fifo = (): Node => ({ kind: 'fifo', meta: meta(0o644) });

  it('are refused with badImage naming what is wrong', async () => {
    const shared = dir();
    await refuse(() => dir({ a: shared, b: dir({ c: shared }) }), /directory \/b\/c appears under more than one name/);
    await refuse(() => dir({ 'a/b': fifo() }), /directory \/ has an entry whose name ext4 cannot store/);
    await refuse(
      () => dir({ '\xff\xfe': dir({ s: { kind: 'symlink', meta: meta(0o777), target: '' } }) }),
      /symlink \/\\xff\\xfe\/s has a target of 0 bytes/,
    );
    await refuse(() => dir({ '': fifo() }), /cannot store/);
    await refuse(() => dir({ x: dir({ ['n'.repeat(256)]: fifo() }) }), /directory \/x has an entry/);
    await refuse(
      () => dir({ s: { kind: 'symlink', meta: meta(0o777), target: '' } }),
      /symlink \/s has a target of 0 bytes/,
    );
    await refuse(
      () => dir({ s: { kind: 'symlink', meta: meta(0o777), target: 'x'.repeat(4096) } }),
      /target of 4096 bytes/,
    );
    await refuse(
      () => dir({ d: { kind: 'block', meta: meta(0o600), major: 4096, minor: 0 } }),
      /device \/d has number 4096:0/,
    );
    await refuse(() => dir({ 'lost+found': fifo() }), /lost\+found in the image is not a directory/);
    await refuse(
      () => dir({ big: { kind: 'fifo', meta: meta(0o644, { uid: 2 ** 32 }) } }),
      /\/big has owner 4294967296:0/,
    );
    const many = fifo();
    await refuse(
      () => dir(new Map(Array.from({ length: 65_001 }, (_, i): [string, Node] => [`l${i}`, many]))),
      /has more than 65000 hard links/,
    );
  });

  it('keep the tree’s own lost+found (its mode and contents) as inode 11', async () => {
    const { w, target } = writer(t.path('lf.img'));
    await w.finish(
      dir({ 'lost+found': dir({ '#1234': file(w.putBuffer(Buffer.from('orphan')), 6) }, meta(0o750, { uid: 7 })) }),
      { sizeBytes: 64 * MiB, inodeCount: 1024 },
    );
    target.close();
    expectClean(t.path('lf.img'));
  });
});

describe('the writer', () => {
  it('writes at its offset and leaves the bytes before it alone', async () => {
    const path = t.path('offset.img');
    const fd = openSync(path, 'w');
    writeSync(fd, Buffer.alloc(MiB, 0xee), 0, MiB, 0);
    closeSync(fd);
    const target = new RawFileTarget(path, { create: false });
    const w = new Ext4Writer({ target, offset: MiB, uuid: UUID, label: 'x', hashSeed: SEED, epoch: EPOCH });
    await w.finish(dir({ a: file(w.putBuffer(Buffer.from('at an offset')), 12) }), {
      sizeBytes: 32 * MiB,
      inodeCount: 1024,
    });
    expect(target.size()).toBe(33 * MiB);
    target.close();
    const all = Buffer.alloc(33 * MiB);
    const rfd = openSync(path, 'r');
    readSync(rfd, all, 0, all.length, 0);
    closeSync(rfd);
    expect(all.subarray(0, MiB).equals(Buffer.alloc(MiB, 0xee))).toBe(true);
    writeFileSync(t.path('region.img'), all.subarray(MiB));
    expectClean(t.path('region.img'));
    expect(() => new Ext4Writer({ target, offset: 1000, uuid: UUID, label: '', hashSeed: SEED, epoch: EPOCH })).toThrow(
      /not a multiple of 4096/,
    );
  });

  it('takes nothing after finish, and rejects bad identifiers', async () => {
    const { w, target } = writer(t.path('done.img'));
    await w.finish(dir(), { sizeBytes: 32 * MiB, inodeCount: 1024 });
    expect(() => w.putBuffer(Buffer.from('late'))).toThrow(/has finished/);
    await expect(w.finish(dir(), { sizeBytes: 32 * MiB, inodeCount: 1024 })).rejects.toThrow(/has finished/);
    expect(() => new Ext4Writer({ target, offset: 0, uuid: 'nope', label: '', hashSeed: SEED, epoch: EPOCH })).toThrow(
      /not a UUID/,
    );
    expect(
      () => new Ext4Writer({ target, offset: 0, uuid: UUID, label: 'x'.repeat(17), hashSeed: SEED, epoch: EPOCH }),
    ).toThrow(/longer than 16 bytes/);
    target.close();
  });
});
