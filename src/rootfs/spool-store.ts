// A ContentStore whose contents are files in a private host directory, written with their holes: a tree materialised into a directory on the same file system moves them into place.
import { closeSync, constants as C, createReadStream, mkdirSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { SparseWriter } from './sparse.js';
import type { ContentRef, ContentStore } from './tree.js';

interface SpoolRef extends ContentRef {
  readonly id: number;
}

/**
 * Each content is a file `<dir>/<n>` (owner root, mode 0600), its all-zero 4 KiB blocks left as holes. The directory
 * is img2vm's own: made empty by it, written by nothing else, so the paths here are trusted (no image name is in
 * them). Whoever made it removes it with what is left in it.
 */
export class SpoolStore implements ContentStore {
  private next = 1;
  /** Contents handed over with take(): their files are gone from here, and release() has nothing to do. */
  private readonly taken = new Set<number>();

  /** dir: a new, empty directory only img2vm writes; made here when missing. */
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  async put(chunks: AsyncIterable<Uint8Array>, size: number): Promise<ContentRef> {
    return this.putSparse(chunks, size);
  }

  async putSparse(parts: AsyncIterable<Uint8Array | number>, size: number): Promise<ContentRef> {
    const ref = this.ref();
    const fd = openSync(this.pathOf(ref), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    try {
      const w = new SparseWriter(fd);
      for await (const p of parts) {
        if (typeof p === 'number') w.hole(p);
        else w.write(Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      }
      w.end(size);
    } catch (e) {
      closeSync(fd);
      unlinkSync(this.pathOf(ref));
      throw e;
    }
    closeSync(fd);
    return ref;
  }

  putBuffer(data: Uint8Array): ContentRef {
    const ref = this.ref();
    const fd = openSync(this.pathOf(ref), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    try {
      const w = new SparseWriter(fd);
      w.write(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      w.end(data.length);
    } finally {
      closeSync(fd);
    }
    return ref;
  }

  release(ref: ContentRef): void {
    const r = ref as SpoolRef;
    if (r.store !== this) throw new Error('release of content another store holds');
    if (this.taken.delete(r.id)) return;
    unlinkSync(this.pathOf(r));
  }

  async *read(ref: ContentRef): AsyncIterable<Buffer> {
    for await (const c of createReadStream(this.pathOf(ref as SpoolRef), { highWaterMark: 1 << 20 })) yield c as Buffer;
  }

  /** Whether ref is content of this store (a file here). */
  holds(ref: ContentRef): boolean {
    return ref.store === this && !this.taken.has((ref as SpoolRef).id);
  }

  /** The file holding ref. */
  pathOf(ref: ContentRef): string {
    return join(this.dir, String((ref as SpoolRef).id));
  }

  /** A new name in the directory for something the caller makes there itself (a directory, a symlink, a device). */
  scratch(): string {
    return join(this.dir, `x${this.next++}`);
  }

  /** ref's file is moved out of here by the caller (renamed into a tree): releasing ref later leaves it alone. */
  take(ref: ContentRef): string {
    this.taken.add((ref as SpoolRef).id);
    return this.pathOf(ref);
  }

  private ref(): SpoolRef {
    return { store: this, id: this.next++ };
  }
}
