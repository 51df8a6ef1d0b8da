// Holes handed to the ext4 writer as holes (putSparse, from GNU and PAX sparse tar entries) cost nothing: a 1 TB
// file with 4 KiB of data stores 4 KiB, and reads back as its data and zeros.
import { describe, expect, it } from 'vitest';
import { Ext4Writer } from '../../../src/disk/ext4/index.js';
import type { BlockTarget } from '../../../src/disk/target.js';

/** A sparse target in memory that counts what the writer hands it. */
class CountingTarget implements BlockTarget {
  written = 0;
  private readonly blocks = new Map<number, Buffer>();
  private bytes = 0;

  write(buf: Uint8Array, offset: number): void {
    this.written += buf.length;
    for (let i = 0; i < buf.length; i += 4096)
      this.blocks.set((offset + i) / 4096, Buffer.from(buf.subarray(i, i + 4096)));
    this.bytes = Math.max(this.bytes, offset + buf.length);
  }

  read(buf: Uint8Array, offset: number): number {
    for (let i = 0; i < buf.length; i += 4096) {
      const b = this.blocks.get((offset + i) / 4096);
      if (b)
        Buffer.from(buf.buffer, buf.byteOffset + i, Math.min(4096, buf.length - i)).set(
          b.subarray(0, Math.min(4096, buf.length - i)),
        );
      else buf.fill(0, i, Math.min(buf.length, i + 4096));
    }
    return buf.length;
  }

  size(): number {
    return this.bytes;
  }

  resize(bytes: number): void {
    this.bytes = bytes;
  }

  close(): void {}
}

async function* parts(list: (Buffer | number)[]): AsyncIterable<Uint8Array | number> {
  for (const p of list) yield p;
}

describe('ext4 writer: holes', () => {
  it('stores a 1 TB file with 4 KiB of data as 4 KiB, and reads it back as data then zeros', async () => {
    const target = new CountingTarget();
    const w = new Ext4Writer({
      target,
      offset: 0,
      uuid: '01234567-89ab-cdef-0123-456789abcdef',
      label: 'root',
      hashSeed: '01234567-89ab-cdef-0123-456789abcdef',
      epoch: 0,
    });
    const data = Buffer.alloc(4096, 0x61);
    const size = 1e12;
    const ref = await w.putSparse(parts([data, size - 4096]), size);
    expect(target.written).toBeLessThan(64 * 1024);
    let seen = 0;
    for await (const c of w.read(ref)) {
      if (seen === 0) expect(c.subarray(0, 4096).equals(data)).toBe(true);
      const from = seen === 0 ? 4096 : 0;
      expect(c.subarray(from).every((b) => b === 0)).toBe(true);
      seen += c.length;
      if (seen > 1 << 20) break;
    }
  });

  it('fills a hole that only partly covers a block with zeros, and refuses more than the declared size', async () => {
    const target = new CountingTarget();
    const w = new Ext4Writer({
      target,
      offset: 0,
      uuid: '01234567-89ab-cdef-0123-456789abcdef',
      label: 'root',
      hashSeed: '01234567-89ab-cdef-0123-456789abcdef',
      epoch: 0,
    });
    const ref = await w.putSparse(parts([Buffer.from('head'), 10_000, Buffer.from('tail')]), 10_008);
    const chunks: Buffer[] = [];
    for await (const c of w.read(ref)) chunks.push(Buffer.from(c));
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(10_008);
    expect(got.subarray(0, 4).toString()).toBe('head');
    expect(got.subarray(4, 10_004).every((b) => b === 0)).toBe(true);
    expect(got.subarray(10_004).toString()).toBe('tail');
    await expect(w.putSparse(parts([Buffer.from('x'), 100]), 50)).rejects.toThrow(/longer than its declared 50 bytes/);
  });
});
