// A first-in first-out queue in fixed chunks, so what was taken out is freed as the queue moves on.

const CHUNK = 4096;

export class Fifo<T> {
  private readonly chunks: T[][] = [];
  /** Where the next value is taken from in the first chunk. */
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(v: T): void {
    let last = this.chunks[this.chunks.length - 1];
    if (!last || last.length === CHUNK) {
      last = [];
      this.chunks.push(last);
    }
    last.push(v);
    this.count++;
  }

  shift(): T {
    if (this.count === 0) throw new Error('shift from an empty queue');
    const first = this.chunks[0]!;
    const v = first[this.head++]!;
    this.count--;
    if (this.head === first.length && (first.length === CHUNK || this.count === 0)) {
      this.chunks.shift();
      this.head = 0;
    }
    return v;
  }
}
