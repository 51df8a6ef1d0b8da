// Block allocation: a fresh cursor that only moves forward past the backup regions, plus a heap of freed runs reused lowest first.
import { nextReservedStart, placeRun, skipReserved } from './geometry.js';

export class Allocator {
  /** The next never-used block; never inside a backup region. */
  cursor: number;
  /** Blocks [0, limit) may be used; taking one past it calls onFull. */
  limit: number;
  private readonly starts: number[] = [];
  private readonly lens: number[] = [];
  private freeCount = 0;

  constructor(
    limit: number,
    private readonly onFull: () => never,
  ) {
    this.cursor = skipReserved(0);
    this.limit = limit;
  }

  get freeBlocks(): number {
    return this.freeCount;
  }

  /** One block: the lowest freed one, else the next fresh one. */
  alloc(): number {
    if (this.starts.length > 0) {
      const b = this.starts[0]!;
      if (this.lens[0]! > 1) {
        // Runs are disjoint and the top is the lowest, so moving its start up keeps the heap ordered.
        this.starts[0] = b + 1;
        this.lens[0] = this.lens[0]! - 1;
      } else {
        this.pop();
      }
      this.freeCount--;
      return b;
    }
    return this.fresh();
  }

  fresh(): number {
    const b = skipReserved(this.cursor);
    if (b >= this.limit) this.onFull();
    this.cursor = b + 1;
    return b;
  }

  /** n contiguous fresh blocks that do not cross a backup region; a skipped gap becomes free space. */
  freshRun(n: number): number {
    const at = placeRun(this.cursor, n);
    if (at + n > this.limit) this.onFull();
    const from = skipReserved(this.cursor);
    if (at > from) {
      // The gap before the next backup region: never written, reused by later small allocations.
      this.free(from, Math.min(at, nextReservedStart(from + 1)) - from);
    }
    this.cursor = at + n;
    return at;
  }

  free(start: number, len: number): void {
    if (len <= 0) return;
    this.starts.push(start);
    this.lens.push(len);
    this.freeCount += len;
    let i = this.starts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.starts[p]! <= this.starts[i]!) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** The free runs below the cursor, sorted and merged (for the bitmaps and for zeroing stale data). */
  freeRuns(): Array<[number, number]> {
    const runs = this.starts.map((s, i): [number, number] => [s, this.lens[i]!]).sort((a, b) => a[0] - b[0]);
    const out: Array<[number, number]> = [];
    for (const r of runs) {
      const last = out[out.length - 1];
      if (last && last[0] + last[1] === r[0]) last[1] += r[1];
      else out.push([r[0], r[1]]);
    }
    return out;
  }

  private pop(): void {
    const n = this.starts.length - 1;
    this.swap(0, n);
    this.starts.pop();
    this.lens.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.starts[l]! < this.starts[m]!) m = l;
      if (r < n && this.starts[r]! < this.starts[m]!) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(a: number, b: number): void {
    const s = this.starts[a]!;
    this.starts[a] = this.starts[b]!;
    this.starts[b] = s;
    const l = this.lens[a]!;
    this.lens[a] = this.lens[b]!;
    this.lens[b] = l;
  }
}
