// A ContentStore in memory, for tests and small trees: all-zero pages are kept as holes, and live references are counted exactly.
import type { ContentRef, ContentStore } from './tree.js';

const PAGE = 64 * 1024;

interface MemoryRef extends ContentRef {
  readonly id: number;
  readonly size: number;
}

export interface MemoryStoreOptions {
  /** Keep only sizes, not bytes (a counting sink for benchmarks); read() then fails. */
  discard?: boolean;
}

export class MemoryStore implements ContentStore {
  private readonly live = new Map<number, { ref: MemoryRef; pages: (Buffer | null)[] }>();
  private nextId = 1;
  /** Bytes kept (non-hole pages), for tests that check sparseness. */
  storedBytes = 0;
  puts = 0;
  releases = 0;

  constructor(private readonly opts: MemoryStoreOptions = {}) {}

  async put(chunks: AsyncIterable<Uint8Array>, size: number): Promise<ContentRef> {
    return this.putSparse(chunks, size);
  }

  /** Holes (numbers) fill no page: a whole page of hole is kept as a hole without being made. */
  async putSparse(parts: AsyncIterable<Uint8Array | number>, size: number): Promise<ContentRef> {
    const pages: (Buffer | null)[] = [];
    /** The page being filled: it starts at pos - fill and ends at a PAGE boundary or at size. */
    let page: Buffer | null = null;
    let fill = 0;
    let pos = 0;
    for await (const c of parts) {
      const len = typeof c === 'number' ? c : c.length;
      if (pos + len > size) throw new Error(`content is more than the ${size} bytes declared`);
      let i = 0;
      while (i < len) {
        if (typeof c === 'number' && page === null && len - i >= Math.min(PAGE, size - pos)) {
          const n = Math.min(PAGE, size - pos);
          pages.push(null);
          i += n;
          pos += n;
          continue;
        }
        page ??= Buffer.alloc(Math.min(PAGE, size - pos));
        const n = Math.min(page.length - fill, len - i);
        if (typeof c !== 'number') page.set(c.subarray(i, i + n), fill);
        fill += n;
        i += n;
        pos += n;
        if (fill === page.length) {
          pages.push(this.keep(page));
          page = null;
          fill = 0;
        }
      }
    }
    if (pos !== size) throw new Error(`content is ${pos} bytes, ${size} declared`);
    return this.add(pages, size);
  }

  putBuffer(data: Uint8Array): ContentRef {
    const pages: (Buffer | null)[] = [];
    for (let i = 0; i < data.length; i += PAGE) pages.push(this.keep(Buffer.from(data.subarray(i, i + PAGE))));
    return this.add(pages, data.length);
  }

  /** A page to keep, or null for a hole (or when discarding). */
  private keep(page: Buffer): Buffer | null {
    if (page.compare(ZERO, 0, page.length) === 0) return null;
    this.storedBytes += page.length;
    return this.opts.discard ? null : page;
  }

  release(ref: ContentRef): void {
    const r = ref as MemoryRef;
    const e = this.live.get(r.id);
    if (ref.store !== this || !e || e.ref !== r) throw new Error(`release of content ${r.id} that is not live`);
    this.live.delete(r.id);
    this.releases++;
  }

  async *read(ref: ContentRef): AsyncIterable<Buffer> {
    const r = ref as MemoryRef;
    const e = this.live.get(r.id);
    if (!e) throw new Error(`read of content ${r.id} that is not live`);
    if (this.opts.discard) throw new Error('this MemoryStore discards content');
    let left = r.size;
    for (const p of e.pages) {
      const n = Math.min(PAGE, left);
      yield p ?? Buffer.alloc(n);
      left -= n;
    }
  }

  /** Content references not released yet. */
  liveRefs(): ContentRef[] {
    return [...this.live.values()].map((e) => e.ref);
  }

  get liveCount(): number {
    return this.live.size;
  }

  private add(pages: (Buffer | null)[], size: number): MemoryRef {
    const ref: MemoryRef = { store: this, id: this.nextId++, size };
    this.live.set(ref.id, { ref, pages });
    this.puts++;
    return ref;
  }
}

const ZERO = Buffer.alloc(PAGE);
