// Coalesces block writes at consecutive block numbers into one large write to the target, so many small files cost few writes.
import type { BlockTarget } from '../target.js';
import { BLOCK } from './geometry.js';

const BATCH_BYTES = 8 * 1024 * 1024;

export class BatchWriter {
  private readonly buf = Buffer.allocUnsafe(BATCH_BYTES);
  private start = 0;
  private blocks = 0;
  /** Bytes handed to the target, for the statistics. */
  written = 0;
  writes = 0;

  constructor(
    private readonly target: BlockTarget,
    private readonly base: number,
  ) {}

  /** Writes one block at block number b: len bytes of src from off, the rest zeros. */
  block(b: number, src: Uint8Array, off = 0, len = BLOCK): void {
    len = Math.min(len, src.length - off);
    if (this.blocks > 0 && (b !== this.start + this.blocks || this.blocks * BLOCK === BATCH_BYTES)) this.flush();
    if (this.blocks === 0) this.start = b;
    const at = this.blocks * BLOCK;
    this.buf.set(len === src.length && off === 0 ? src : src.subarray(off, off + len), at);
    if (len < BLOCK) this.buf.fill(0, at + len, at + BLOCK);
    this.blocks++;
  }

  /** Writes whole blocks starting at block b, bypassing the batch for large buffers. */
  blocksAt(b: number, data: Uint8Array): void {
    if (data.length <= 4 * BLOCK) {
      for (let i = 0; i < data.length; i += BLOCK) this.block(b + i / BLOCK, data, i, Math.min(BLOCK, data.length - i));
      return;
    }
    this.flush();
    this.direct(data, b * BLOCK);
  }

  /** Writes bytes at a byte offset of the file system (superblocks, partial blocks); flushes the batch first. */
  direct(data: Uint8Array, fsOffset: number): void {
    this.flush();
    this.target.write(data, this.base + fsOffset);
    this.written += data.length;
    this.writes++;
  }

  flush(): void {
    if (this.blocks === 0) return;
    const n = this.blocks * BLOCK;
    this.target.write(this.buf.subarray(0, n), this.base + this.start * BLOCK);
    this.written += n;
    this.writes++;
    this.blocks = 0;
  }
}
