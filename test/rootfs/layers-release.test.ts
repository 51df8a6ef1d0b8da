// The tree flattener's bookkeeping: content released exactly when a node loses its last name, and a directory of 100,000 entries.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LayerFlattener } from '../../src/rootfs/layers.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { makeTar, padTo512, TAR_END } from './helpers.js';
import { dir, EPOCH, expectExactRefs, flattenLayers, ls, paths, ustar } from './layers-helpers.js';

describe('content release', () => {
  it('a store counting live references ends with exactly the surviving files', async () => {
    const l1 = await makeTar([
      { name: 'keep', content: 'k' },
      { name: 'over', content: 'o1' },
      { name: 'wh', content: 'w' },
      { name: 'd/a', content: 'a' },
      { name: 'd/b', content: 'b' },
      { name: 'linked', content: 'L' },
      { name: 'd/link', type: 'link', linkname: 'linked' },
      { name: 'opq/x', content: 'x' },
      { name: 'same', content: 's1' },
      { name: 'same', content: 's2' },
    ]);
    const l2 = await makeTar([
      { name: 'over', content: 'o2' },
      { name: '.wh.wh', content: '' },
      { name: 'd', content: 'd is a file now' },
      { name: 'opq/.wh..wh..opq', content: '' },
      { name: 'opq/y', content: 'y' },
    ]);
    const l3 = await makeTar([{ name: '.wh.linked', content: '' }]);
    const r = await flattenLayers([l1, l2, l3]);
    expect(paths(r.root)).toEqual(['d file', 'keep file', 'opq dir', 'opq/y file', 'over file', 'same file']);
    expect(r.store.liveCount).toBe(5);
    expect(r.store.puts).toBe(12);
    expect(r.store.releases).toBe(7);
    expectExactRefs(r);
  });

  it('a hard link whose target is inside the directory it replaces is skipped, releasing that tree', async () => {
    const l1 = await makeTar([{ name: 'd/f', content: 'f' }]);
    const l2 = await makeTar([{ name: 'd', type: 'link', linkname: 'd/f' }]);
    const r = await flattenLayers([l1, l2]);
    expect(r.warnings).toEqual([expect.stringMatching(/hardlink "d": its target "d\/f" no longer exists/)]);
    expect(r.root.entries.size).toBe(0);
    expectExactRefs(r);
  });
});

describe('a directory with 100,000 entries', () => {
  it('is flattened, counted and whited out in one piece', async () => {
    const n = 100_000;
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) parts.push(ustar(`big/f${i}`, 0));
    parts.push(ustar('big/data', 1), padTo512(Buffer.from('x')), TAR_END);
    const l1 = Buffer.concat(parts);
    const store = new MemoryStore();
    const f = new LayerFlattener({ store, epoch: EPOCH });
    await f.applyLayer(Readable.from([l1]));
    await f.applyLayer(
      Readable.from([
        await makeTar([
          { name: '.wh.big', content: '' },
          { name: 'after', content: 'a' },
        ]),
      ]),
    );
    const { root, stats } = f.finish();
    expect(ls(root)).toEqual(['after']);
    expect(store.puts).toBe(n + 2);
    expect(store.liveCount).toBe(1);
    expect(stats).toMatchObject({ files: 1, dirs: 0, whiteouts: 1 });

    const once = await flattenLayers([l1]);
    expect(dir(once.root, 'big').entries.size).toBe(n + 1);
    // '.', '..' and 100,001 entries of 8 + (names of 2..6 bytes, padded to 4 or 8).
    const entryBytes =
      24 + Array.from({ length: n }, (_, i) => 8 + ((`f${i}`.length + 3) & ~3)).reduce((a, b) => a + b, 0) + 8 + 4;
    expect(once.stats).toMatchObject({
      files: n + 1,
      dirs: 1,
      bytes: 1,
      blocks4k: 1 + 1 + Math.ceil(entryBytes / 4096),
    });
  });
});
