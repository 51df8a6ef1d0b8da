// Pulls a chunk iterator ahead of its consumer, up to a byte budget, so decompression (on libuv's threads) overlaps with processing.
//
// A zlib stream only inflates while its readable buffer has room, and that buffer holds one chunk:
// without a reader ahead of it, inflating and flattening take turns on two cores.

export class ReadAhead implements AsyncIterator<Buffer> {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private failed = false;
  private error: unknown;
  private pumping = false;
  private stopped = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly src: AsyncIterator<Buffer>,
    private readonly maxBytes: number,
  ) {}

  async next(): Promise<IteratorResult<Buffer>> {
    for (;;) {
      if (this.stopped) return { done: true, value: undefined };
      const b = this.queue.shift();
      if (b !== undefined) {
        this.queued -= b.length;
        this.pump();
        return { done: false, value: b };
      }
      if (this.failed) throw this.error;
      if (this.ended) return { done: true, value: undefined };
      this.pump();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async return(): Promise<IteratorResult<Buffer>> {
    this.stopped = true;
    this.queue.length = 0;
    this.notify();
    await this.src.return?.();
    return { done: true, value: undefined };
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private pump(): void {
    if (this.pumping || this.ended || this.failed || this.stopped) return;
    this.pumping = true;
    void (async () => {
      try {
        while (this.queued < this.maxBytes && !this.stopped) {
          const r = await this.src.next();
          if (this.stopped) break;
          if (r.done) {
            this.ended = true;
            break;
          }
          this.queue.push(r.value);
          this.queued += r.value.length;
          this.notify();
        }
      } catch (e) {
        this.failed = true;
        this.error = e;
      } finally {
        this.pumping = false;
        this.notify();
      }
    })();
  }
}
