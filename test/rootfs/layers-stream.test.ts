// Streaming through the tree flattener: content flows to the store chunk by chunk with bounded lag, progress is reported, aborts stop everything.
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { LayerFlattener, type FlattenProgress } from '../../src/rootfs/layers.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import type { ContentRef } from '../../src/rootfs/tree.js';
import { makeTar, TAR_END } from './helpers.js';
import { EPOCH, text, ustar } from './layers-helpers.js';

const MiB = 1024 * 1024;

/** A layer with one file of `size` non-zero bytes, generated chunk by chunk; `produced` counts what the source has handed out. */
function lazyLayer(size: number, counter: { produced: number }): AsyncGenerator<Buffer> {
  return (async function* () {
    yield ustar('big', size);
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    for (let left = size; left > 0; left -= chunk.length) {
      const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
      counter.produced += c.length;
      yield c;
    }
    yield Buffer.alloc((512 - (size % 512)) % 512);
    yield TAR_END;
  })();
}

/** A store that consumes slowly (one macrotask per chunk) and records how far the source ran ahead of it. */
class LaggingStore extends MemoryStore {
  maxLag = 0;
  maxChunk = 0;
  constructor(private readonly counter: { produced: number }) {
    super({ discard: true });
  }
  override async put(chunks: AsyncIterable<Uint8Array>, size: number): Promise<ContentRef> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the generator below is not a method
    const self = this;
    let consumed = 0;
    async function* watched(): AsyncGenerator<Uint8Array> {
      for await (const c of chunks) {
        consumed += c.length;
        self.maxChunk = Math.max(self.maxChunk, c.length);
        self.maxLag = Math.max(self.maxLag, self.counter.produced - consumed);
        await new Promise((r) => setImmediate(r));
        yield c;
      }
    }
    return super.put(watched(), size);
  }
}

describe('content streams to the store', () => {
  it.each([
    ['uncompressed', false],
    ['gzip', true],
  ])('%s: a 64 MiB file reaches the store while the source is at most a few MiB ahead', async (_name, gzip) => {
    const counter = { produced: 0 };
    const store = new LaggingStore(counter);
    const f = new LayerFlattener({ store, epoch: EPOCH });
    const src = Readable.from(lazyLayer(64 * MiB, counter));
    await f.applyLayer(gzip ? src.pipe(createGzip({ level: 1 })) : src);
    const { stats } = f.finish();
    expect(stats.bytes).toBe(64 * MiB);
    expect(stats.blocks4k).toBe(16384 + 1);
    expect(store.storedBytes).toBe(64 * MiB);
    expect(store.maxChunk).toBeLessThanOrEqual(MiB);
    expect(store.maxLag).toBeLessThan(8 * MiB);
  });

  it('a store that fails is reported as it failed, and the layer stops', async () => {
    class Failing extends MemoryStore {
      override async put(): Promise<ContentRef> {
        throw new Error('disk full (from the store)');
      }
    }
    const f = new LayerFlattener({ store: new Failing(), epoch: EPOCH });
    await expect(
      f.applyLayer(Readable.from([await makeTar([{ name: 'f', content: 'x'.repeat(100_000) }])])),
    ).rejects.toThrow('disk full (from the store)');
  });
});

describe('progress', () => {
  it('reports bytes read and entries over all layers, and a last report from finish()', async () => {
    const l1 = await makeTar([
      { name: 'a', content: 'a' },
      { name: 'b', content: 'b' },
    ]);
    const l2 = await makeTar([{ name: 'c', content: 'c' }]);
    const events: FlattenProgress[] = [];
    const f = new LayerFlattener({
      store: new MemoryStore(),
      epoch: EPOCH,
      onProgress: (p) => events.push(p),
      layers: 2,
      bytesInTotal: l1.length + l2.length,
      progressIntervalMs: 0,
    });
    await f.applyLayer(Readable.from([l1]));
    await f.applyLayer(Readable.from([l2]));
    f.finish();
    expect(events.at(-1)).toEqual({
      layer: 2,
      layers: 2,
      bytesIn: l1.length + l2.length,
      bytesInTotal: l1.length + l2.length,
      entries: 3,
    });
    for (let i = 1; i < events.length; i++) {
      expect(events[i]!.bytesIn).toBeGreaterThanOrEqual(events[i - 1]!.bytesIn);
      expect(events[i]!.entries).toBeGreaterThanOrEqual(events[i - 1]!.entries);
    }
    expect(events.some((e) => e.layer === 1 && e.entries === 2)).toBe(true);
  });

  it('is throttled: within one interval only the first report and the one from finish()', async () => {
    const events: FlattenProgress[] = [];
    const f = new LayerFlattener({
      store: new MemoryStore(),
      epoch: EPOCH,
      onProgress: (p) => events.push(p),
      progressIntervalMs: 1e9,
    });
    for (let i = 0; i < 5; i++) await f.applyLayer(Readable.from([await makeTar([{ name: `f${i}`, content: 'x' }])]));
    f.finish();
    expect(events).toHaveLength(2);
    expect(events[1]).toMatchObject({ layer: 5, entries: 5 });
    expect(events[1]!.layers).toBeUndefined();
  });
});

describe('cancellation', () => {
  it('stops promptly when the signal aborts while the source stalls, and destroys the source', async () => {
    const ac = new AbortController();
    const head = await makeTar([{ name: 'first', content: 'x' }]);
    let destroyed = false;
    const src = new Readable({
      read() {
        if (!this.readableLength && !sent) {
          sent = true;
          this.push(head.subarray(0, 1024));
        } // then nothing more: a registry that stops sending
      },
      destroy(err, cb) {
        destroyed = true;
        cb(err);
      },
    });
    let sent = false;
    setTimeout(() => ac.abort(), 50);
    const f = new LayerFlattener({ store: new MemoryStore(), epoch: EPOCH, signal: ac.signal });
    const e = await f.applyLayer(src).catch((x: unknown) => x);
    expect((e as Error).name).toBe('AbortError');
    expect(destroyed).toBe(true);
  });

  it('an abort in the middle of a file ends the store’s read with the signal’s reason and destroys the source', async () => {
    const ac = new AbortController();
    const reason = new Error('stop now');
    const counter = { produced: 0 };
    let storeSaw: unknown;
    class Aborting extends MemoryStore {
      override async put(chunks: AsyncIterable<Uint8Array>): Promise<ContentRef> {
        let n = 0;
        try {
          for await (const _c of chunks) if (++n === 3) ac.abort(reason);
        } catch (e) {
          storeSaw = e;
          throw e;
        }
        throw new Error('the content did not stop');
      }
    }
    const src = Readable.from(lazyLayer(64 * MiB, counter));
    const f = new LayerFlattener({ store: new Aborting(), epoch: EPOCH, signal: ac.signal });
    await expect(f.applyLayer(src)).rejects.toBe(reason);
    expect(storeSaw).toBe(reason);
    expect(src.destroyed).toBe(true);
    expect(counter.produced).toBeLessThan(8 * MiB);
  });

  it('an aborted signal refuses the layer before reading it', async () => {
    const ac = new AbortController();
    ac.abort(new Error('already'));
    const src = Readable.from([await makeTar([{ name: 'f', content: 'x' }])]);
    const f = new LayerFlattener({ store: new MemoryStore(), epoch: EPOCH, signal: ac.signal });
    await expect(f.applyLayer(src)).rejects.toThrow('already');
    expect(src.destroyed).toBe(true);
  });

  it('layers apply one at a time, and not after finish()', async () => {
    const f = new LayerFlattener({ store: new MemoryStore(), epoch: EPOCH });
    const tar = await makeTar([{ name: 'f', content: 'x' }]);
    const first = f.applyLayer(Readable.from([tar]));
    await expect(f.applyLayer(Readable.from([tar]))).rejects.toThrow(/while another layer/);
    await first;
    const { root } = f.finish();
    expect(await text(root, 'f')).toBe('x');
    await expect(f.applyLayer(Readable.from([tar]))).rejects.toThrow(/after finish/);
    expect(() => f.finish()).toThrow(/twice/);
  });

  it('after a layer failed, half applied, it refuses to go on', async () => {
    const f = new LayerFlattener({ store: new MemoryStore(), epoch: EPOCH });
    const tar = await makeTar([
      { name: 'a', content: 'a' },
      { name: 'b', content: 'b'.repeat(5000) },
    ]);
    await expect(f.applyLayer(Readable.from([tar.subarray(0, 2048)]))).rejects.toMatchObject({ kind: 'badImage' });
    await expect(f.applyLayer(Readable.from([tar]))).rejects.toThrow(/after a layer failed/);
    expect(() => f.finish()).toThrow(/after a layer failed/);
  });
});
