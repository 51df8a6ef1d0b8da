// A content store that keeps bytes in memory: tests, and the small files img2vm itself writes into the guest.
import { Img2vmError } from '../../core/errors.js';
import type { ContentRef, ContentStore } from '../../rootfs/tree.js';

class MemoryRef implements ContentRef {
  released = false;
  constructor(
    readonly store: MemoryStore,
    readonly data: Buffer,
  ) {}
}

export class MemoryStore implements ContentStore {
  /** Bytes held by refs not yet released. */
  bytes = 0;

  async put(chunks: AsyncIterable<Uint8Array>, size: number): Promise<ContentRef> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of chunks) {
      n += c.length;
      if (n > size)
        throw new Img2vmError(
          'badImage',
          `a file's content is longer than its declared ${size} bytes`,
          'the image content is damaged or hostile',
        );
      parts.push(Buffer.from(c));
    }
    if (n !== size)
      throw new Img2vmError(
        'badImage',
        `a file's content ended after ${n} of its declared ${size} bytes`,
        'the image content is damaged or hostile',
      );
    return this.putBuffer(Buffer.concat(parts, n));
  }

  putBuffer(data: Uint8Array): ContentRef {
    const copy = Buffer.from(data);
    this.bytes += copy.length;
    return new MemoryRef(this, copy);
  }

  release(ref: ContentRef): void {
    if (ref instanceof MemoryRef && ref.store === this && !ref.released) {
      ref.released = true;
      this.bytes -= ref.data.length;
    }
  }

  async *read(ref: ContentRef): AsyncIterable<Buffer> {
    if (!(ref instanceof MemoryRef) || ref.store !== this) throw new Error('the ref belongs to another content store');
    const piece = 1024 * 1024;
    for (let i = 0; i < ref.data.length; i += piece) yield ref.data.subarray(i, i + piece);
  }
}
