// File contents as they stream in: cut into 4 KiB blocks, all-zero blocks kept as holes, the rest written at once.
import { Img2vmError } from '../../core/errors.js';
import type { ContentRef, ContentStore } from '../../rootfs/tree.js';
import type { BlockTarget } from '../target.js';
import type { Allocator } from './alloc.js';
import type { BatchWriter } from './batch.js';
import { BLOCK, MAX_EXTENT_LEN, MAX_FILE_BLOCKS } from './geometry.js';

const ZERO = Buffer.alloc(BLOCK);
/** The zero-padded last block of content already in memory; emit() copies it out at once. */
const TAIL = Buffer.alloc(BLOCK);

/** The extents of every ref without data blocks (empty files, holes only): one array, not one per file. */
const NO_EXTENTS: readonly number[] = Object.freeze([]);

/**
 * Where a file's bytes are: extents as flat triples (logical block, physical block, length). A tree
 * holds one per file, so it is kept small: an empty file's has no fields of its own but the plan's,
 * a file in one run of blocks from its start (nearly every file) keeps just the run's first block,
 * others an array of exactly their extents, and the store is on the prototype (refKinds).
 */
export abstract class Ext4Ref implements ContentRef {
  declare readonly store: ContentStore;
  /**
   * Set by a plan of the tree (plan.ts) on the first node it finds using this ref: the plan's mark,
   * that node and its inode number. A tree of a million files is numbered through these fields
   * instead of a map from node to number, which cost about 30 bytes a file more. -1: released.
   */
  mark = 0;
  ino = 0;
  owner: object | undefined = undefined;
  abstract readonly size: number;
  abstract readonly extents: readonly number[];
  abstract readonly extentCount: number;
  /** Physical blocks the extents cover. */
  abstract readonly blocks: number;

  get released(): boolean {
    return this.mark < 0;
  }

  release(): void {
    this.mark = -1;
  }
}

/** The ref of an empty file. */
class EmptyRef extends Ext4Ref {
  get size(): number {
    return 0;
  }

  get extents(): readonly number[] {
    return NO_EXTENTS;
  }

  get extentCount(): number {
    return 0;
  }

  get blocks(): number {
    return 0;
  }
}

class DataRef extends Ext4Ref {
  /** The first physical block of the one extent [0, size in blocks), or the extents. */
  private readonly ext: number | readonly number[];

  constructor(
    readonly size: number,
    extents: readonly number[],
  ) {
    super();
    if (extents.length === 0) this.ext = NO_EXTENTS;
    else if (extents.length === 3 && extents[0] === 0 && extents[2] === Math.ceil(size / BLOCK)) this.ext = extents[1]!;
    // A copy of exactly its length: the list it was built in grew by push and has spare slots.
    else this.ext = extents.slice();
  }

  get extents(): readonly number[] {
    const e = this.ext;
    return typeof e === 'number' ? [0, e, Math.ceil(this.size / BLOCK)] : e;
  }

  get extentCount(): number {
    const e = this.ext;
    return typeof e === 'number' ? 1 : e.length / 3;
  }

  get blocks(): number {
    const e = this.ext;
    if (typeof e === 'number') return Math.ceil(this.size / BLOCK);
    let n = 0;
    for (let i = 2; i < e.length; i += 3) n += e[i]!;
    return n;
  }
}

/** Makes the refs of one store: classes of their own whose prototype holds the store (8 bytes a file less than a field). */
export type RefMaker = (size: number, extents: readonly number[]) => Ext4Ref;

export function refKinds(store: ContentStore): RefMaker {
  class Empty extends EmptyRef {}
  class Data extends DataRef {}
  Object.defineProperty(Empty.prototype, 'store', { value: store });
  Object.defineProperty(Data.prototype, 'store', { value: store });
  return (size, extents) => (size === 0 ? new Empty() : new Data(size, extents));
}

export function checkFileSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0 || Math.ceil(size / BLOCK) > MAX_FILE_BLOCKS) {
    throw new Img2vmError(
      'badImage',
      `a file size of ${size} bytes cannot be stored in ext4`,
      'the image content is damaged or hostile',
    );
  }
}

/** Receives one file's bytes in order; end() checks the declared size and returns the ref. */
export class FileSink {
  /** A block split across chunks; allocated only when chunks are not block-aligned. */
  private carry: Buffer | undefined;
  private carryLen = 0;
  private total = 0;
  private logical = 0;
  private readonly ext: number[] = [];

  constructor(
    private readonly make: RefMaker,
    private readonly alloc: Allocator,
    private readonly batch: BatchWriter,
    private readonly size: number,
  ) {}

  feed(chunk: Uint8Array): void {
    const len = chunk.length;
    if (this.total + len > this.size) {
      throw new Img2vmError(
        'badImage',
        `a file's content is longer than its declared ${this.size} bytes`,
        'the image content is damaged or hostile',
      );
    }
    this.total += len;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, len);
    let off = 0;
    if (this.carryLen > 0) {
      const carry = this.carry!;
      const n = Math.min(BLOCK - this.carryLen, len);
      buf.copy(carry, this.carryLen, 0, n);
      this.carryLen += n;
      off = n;
      if (this.carryLen < BLOCK) return;
      this.emit(carry, 0);
      this.carryLen = 0;
    }
    while (len - off >= BLOCK) {
      this.emit(buf, off);
      off += BLOCK;
    }
    if (off < len) {
      this.carry ??= Buffer.allocUnsafe(BLOCK);
      buf.copy(this.carry, 0, off, len);
      this.carryLen = len - off;
    }
  }

  /** n bytes of hole (putSparse): whole blocks stay unmapped without being looked at; a block the hole only partly covers is fed zeros. */
  skip(n: number): void {
    if (this.total + n > this.size) {
      throw new Img2vmError(
        'badImage',
        `a file's content is longer than its declared ${this.size} bytes`,
        'the image content is damaged or hostile',
      );
    }
    if (this.carryLen > 0) {
      const k = Math.min(n, BLOCK - this.carryLen);
      this.feed(ZERO.subarray(0, k));
      n -= k;
    }
    const whole = Math.floor(n / BLOCK);
    this.logical += whole;
    this.total += whole * BLOCK;
    if (n > whole * BLOCK) this.feed(ZERO.subarray(0, n - whole * BLOCK));
  }

  /** The whole content at once (putBuffer): no carry buffer, the tail goes out zero-padded. */
  whole(data: Uint8Array): Ext4Ref {
    const n = data.length - (data.length % BLOCK);
    if (n > 0) this.feed(data.subarray(0, n));
    if (n < data.length) {
      this.total += data.length - n;
      TAIL.set(data.subarray(n));
      TAIL.fill(0, data.length - n);
      this.emit(TAIL, 0);
    }
    return this.end();
  }

  end(): Ext4Ref {
    if (this.total !== this.size) {
      throw new Img2vmError(
        'badImage',
        `a file's content ended after ${this.total} of its declared ${this.size} bytes`,
        'the image content is damaged or hostile',
      );
    }
    if (this.carryLen > 0) {
      const carry = this.carry!;
      carry.fill(0, this.carryLen);
      this.emit(carry, 0);
      this.carryLen = 0;
    }
    return this.make(this.size, this.ext);
  }

  /** Gives back whatever blocks were taken (a failed or oversized stream). */
  abort(): void {
    for (let i = 0; i < this.ext.length; i += 3) this.alloc.free(this.ext[i + 1]!, this.ext[i + 2]!);
    this.ext.length = 0;
  }

  private emit(buf: Buffer, off: number): void {
    const l = this.logical++;
    if (buf.compare(ZERO, 0, BLOCK, off, off + BLOCK) === 0) return;
    const p = this.alloc.alloc();
    this.batch.block(p, buf, off);
    const e = this.ext;
    const n = e.length;
    if (n > 0 && e[n - 3]! + e[n - 1]! === l && e[n - 2]! + e[n - 1]! === p && e[n - 1]! < MAX_EXTENT_LEN) e[n - 1]!++;
    else e.push(l, p, 1);
  }
}

/** Reads a ref back from the target, holes as zeros, in pieces of at most 1 MiB. */
export async function* readRef(ref: Ext4Ref, target: BlockTarget, base: number): AsyncGenerator<Buffer> {
  const PIECE = 256;
  let pos = 0; // logical block
  const total = Math.ceil(ref.size / BLOCK);
  const e = ref.extents;
  let i = 0;
  while (pos < total) {
    const n = Math.min(PIECE, total - pos);
    const out = Buffer.alloc(n * BLOCK);
    while (i < e.length && e[i]! + e[i + 2]! <= pos) i += 3;
    for (let j = i; j < e.length && e[j]! < pos + n; j += 3) {
      const from = Math.max(pos, e[j]!);
      const to = Math.min(pos + n, e[j]! + e[j + 2]!);
      const phys = e[j + 1]! + (from - e[j]!);
      target.read(out.subarray((from - pos) * BLOCK, (to - pos) * BLOCK), base + phys * BLOCK);
    }
    pos += n;
    const end = Math.min(n * BLOCK, ref.size - (pos - n) * BLOCK);
    yield end === out.length ? out : out.subarray(0, end);
  }
}
