// Counts the 4 KiB blocks of file content that are not all zeros: what a sparse file system must allocate for them.

const BLOCK = 4096;
const ZERO = Buffer.alloc(BLOCK);

/** Streaming: feed the content chunk by chunk, in order; blocks are aligned to file offsets. */
export class BlockCounter {
  /** Blocks finished so far that hold a non-zero byte. */
  private count = 0;
  /** Bytes seen, so pos % BLOCK is where the current block stands. */
  private pos = 0;
  /** Whether the current (unfinished) block has a non-zero byte. */
  private dirty = false;

  add(chunk: Uint8Array): void {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let i = 0;
    const len = b.length;
    while (i < len) {
      const room = BLOCK - (this.pos % BLOCK);
      const n = Math.min(room, len - i);
      if (!this.dirty && b.compare(ZERO, 0, n, i, i + n) !== 0) this.dirty = true;
      i += n;
      this.pos += n;
      if (n === room) {
        if (this.dirty) this.count++;
        this.dirty = false;
      }
    }
  }

  /** n bytes of hole (zeros that are not handed over): counts as add() of n zeros would, without looking at them. */
  skip(n: number): void {
    const into = this.pos % BLOCK;
    if (into !== 0 && n >= BLOCK - into) {
      if (this.dirty) this.count++;
      this.dirty = false;
    }
    this.pos += n;
  }

  /** Blocks with data, counting a final partial block. */
  get blocks(): number {
    return this.count + (this.dirty ? 1 : 0);
  }
}

export function countDataBlocks(data: Uint8Array): number {
  const c = new BlockCounter();
  c.add(data);
  return c.blocks;
}
