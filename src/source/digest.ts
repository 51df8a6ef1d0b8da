// Content addresses: digest syntax, and reads that refuse bytes whose digest or size differ from what was declared.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';

/** No manifest, index or config a real image needs comes close; anything bigger is hostile. */
export const MAX_JSON = 4 * 1024 * 1024;

const SHA256 = /^sha256:[a-f0-9]{64}$/;

export const DigestSchema = z
  .string()
  .regex(SHA256, 'expected a sha256 digest ("sha256:" and 64 lowercase hex digits)');

export function isDigest(s: string): boolean {
  return SHA256.test(s);
}

export function hexOf(digest: string): string {
  if (!SHA256.test(digest))
    throw new Img2vmError(
      'badImage',
      `"${digest}" is not a sha256 digest`,
      'only sha256 content addresses are supported',
    );
  return digest.slice('sha256:'.length);
}

/** Told of every byte img2vm hashes to check content (tests count them: a blob trusted from the store is not hashed). */
export const hashWatch: { onBytes?: (n: number) => void } = {};

/** A SHA-256 whose input hashWatch hears of. */
export function sha256Hash(): Hash {
  const h = createHash('sha256');
  const update = h.update.bind(h) as (data: Buffer | string) => Hash;
  h.update = ((data: Buffer | string) => {
    hashWatch.onBytes?.(typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength);
    return update(data);
  }) as Hash['update'];
  return h;
}

export function sha256(buf: Buffer | string): string {
  return `sha256:${sha256Hash().update(buf).digest('hex')}`;
}

const TAMPER_HINT = 'the source is corrupt or was tampered with; the bad bytes were discarded';

export function digestMismatch(what: string, want: string, got: string): Img2vmError {
  return new Img2vmError('badImage', `${what} does not match its digest: expected ${want}, got ${got}`, TAMPER_HINT);
}

export function tooLarge(what: string, limit: number): Img2vmError {
  return new Img2vmError('badImage', `${what} is larger than the ${limit} bytes declared for it`, TAMPER_HINT);
}

export function truncated(what: string, got: number, want: number): Img2vmError {
  return new Img2vmError(
    'badImage',
    `${what} is truncated: ${got} of ${want} bytes`,
    'the source is incomplete; fetch or re-create it',
  );
}

/** Checks bytes in hand against their content address. */
export function verifyBytes(buf: Buffer, digest: string, what: string, size?: number): void {
  if (size !== undefined && buf.length > size) throw tooLarge(what, size);
  if (size !== undefined && buf.length < size) throw truncated(what, buf.length, size);
  const got = sha256(buf);
  if (got !== digest) throw digestMismatch(what, digest, got);
}

/**
 * Passes bytes through while hashing them; fails as soon as more than `size` bytes arrive, and at
 * the end when fewer arrived or the digest differs, so a reader never mistakes bad bytes for good.
 */
export class VerifyStream extends Transform {
  private readonly hash: Hash = sha256Hash();
  private count = 0;

  constructor(
    private readonly digest: string,
    private readonly size: number | undefined,
    private readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    if (this.size !== undefined && this.count > this.size) return cb(tooLarge(this.what, this.size));
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.size !== undefined && this.count < this.size) return cb(truncated(this.what, this.count, this.size));
    const got = `sha256:${this.hash.digest('hex')}`;
    cb(got === this.digest ? null : digestMismatch(this.what, this.digest, got));
  }
}

/** A verifying view of src: errors of src pass through, and destroying the view destroys src. */
export function verified(src: Readable, digest: string, size: number | undefined, what: string): Readable {
  const v = new VerifyStream(digest, size, what);
  src.on('error', (e) => v.destroy(e));
  v.on('close', () => {
    if (!src.destroyed) src.destroy();
  });
  src.pipe(v);
  return v;
}

/** Reads a whole stream, refusing more than limit bytes (before buffering them). */
export async function readLimited(src: AsyncIterable<Buffer | string>, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of src) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    n += b.length;
    if (n > limit) {
      (src as Partial<Readable>).destroy?.();
      throw new Img2vmError(
        'badImage',
        `${what} is larger than ${limit} bytes`,
        'refused: no genuine image document is that large',
      );
    }
    parts.push(b);
  }
  return Buffer.concat(parts, n);
}
