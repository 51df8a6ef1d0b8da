// A content-addressed blob cache shared by concurrent img2vm processes: blobs appear under their digest only whole and verified.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';
import { deadOwner, ownerTag } from '../core/leftovers.js';
import { asWriteError, isNoSpace, noSpaceError } from '../core/no-space.js';
import { testHook } from '../core/test-hook.js';
import { acquireLock, type HeldLock, type LockOptions } from '../kernel/lock.js';
import { digestMismatch, hexOf, sha256, tooLarge, truncated, verified } from './digest.js';

/**
 * Opens a file for reading without letting what sits at its name block or feed the reader: O_NONBLOCK so a FIFO
 * opens at once, O_NOFOLLOW (unless follow) so a symlink is not taken, then fstat of what was opened must be a
 * regular file (a FIFO or device is closed unread). Undefined when nothing is there.
 */
export async function openRegularFile(path: string, follow = false): Promise<{ fh: FileHandle; size: number } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | (follow ? 0 : constants.O_NOFOLLOW));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw Object.assign(new Error(`${path} is a symbolic link`), { code: 'ELOOP' });
    throw e;
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw Object.assign(new Error(`${path} is not a regular file`), { code: 'ENOTREG' });
  }
  return { fh, size: st.size };
}

/**
 * Layout: ROOT/blobs/sha256/<hex> (final, immutable), ROOT/blobs/sha256/.partial-* (in flight,
 * private to one writer), ROOT/refs/<sha256 of the reference>.json (tag → digest).
 * A final name is only ever created by rename() of a fully written, fsynced and verified temp
 * file, so readers never see a partial blob, and two writers of one blob both succeed (the second
 * rename replaces identical bytes).
 */
export class BlobCache {
  readonly blobs: string;
  readonly refs: string;

  constructor(readonly root: string) {
    this.blobs = join(root, 'blobs', 'sha256');
    this.refs = join(root, 'refs');
  }

  pathOf(digest: string): string {
    return join(this.blobs, hexOf(digest));
  }

  /** Whether the blob is present (with the expected size, when given). */
  async has(digest: string, size?: number): Promise<boolean> {
    const st = await stat(this.pathOf(digest)).catch(() => undefined);
    return !!st?.isFile() && (size === undefined || st.size === size);
  }

  /** A small blob's bytes, verified; a damaged entry is removed so it is fetched again. */
  async read(digest: string, max: number): Promise<Buffer | undefined> {
    const p = this.pathOf(digest);
    const f = await openRegularFile(p).catch(() => undefined);
    if (!f) return undefined;
    let buf: Buffer;
    let ino: number;
    try {
      if (f.size > max) return undefined;
      ino = (await f.fh.stat()).ino;
      buf = await f.fh.readFile();
    } finally {
      await f.fh.close();
    }
    if (sha256(buf) !== digest) {
      await this.removeDamaged(p, ino);
      return undefined;
    }
    return buf;
  }

  /** Removes a damaged entry, unless another process has put a good one there since it was read. */
  private async removeDamaged(p: string, ino: number): Promise<void> {
    const st = await stat(p).catch(() => undefined);
    if (st?.ino === ino) await rm(p, { force: true });
  }

  /** Hashes a stored blob; a damaged one is removed (so it is fetched again) and false returned. */
  async verify(digest: string, size: number): Promise<boolean> {
    const p = this.pathOf(digest);
    const h = createHash('sha256');
    let n = 0;
    let ino: number;
    try {
      const f = await openRegularFile(p);
      if (!f) return false;
      ino = (await f.fh.stat()).ino;
      for await (const c of f.fh.createReadStream()) {
        n += (c as Buffer).length;
        h.update(c as Buffer);
      }
    } catch {
      return false;
    }
    if (n === size && `sha256:${h.digest('hex')}` === digest) return true;
    await this.removeDamaged(p, ino);
    return false;
  }

  /** Streams a blob, verifying it again on the way (a cache on a failing disk must not poison images). */
  open(digest: string, size: number | undefined, what: string): Readable {
    const path = this.pathOf(digest);
    // Opened through a stream so callers keep a synchronous open; a FIFO planted in the cache is refused on open.
    const source = new PassThrough();
    openRegularFile(path).then(
      (f) => {
        if (!f) return source.destroy(Object.assign(new Error(`${path} is missing`), { code: 'ENOENT' }));
        const s = f.fh.createReadStream();
        s.on('error', (e) => source.destroy(e));
        s.pipe(source);
      },
      (e: Error) => source.destroy(e),
    );
    return verified(source, digest, size, what);
  }

  async put(digest: string, bytes: Buffer): Promise<void> {
    const w = await this.writer(digest, bytes.length, `blob ${digest}`);
    try {
      await w.write(bytes);
      await w.commit();
    } finally {
      await w.abort();
    }
  }

  async writer(digest: string, size: number, what: string): Promise<BlobWriter> {
    await mkdir(this.blobs, { recursive: true, mode: 0o755 });
    this.swept ??= this.sweep();
    await this.swept;
    const tmp = join(this.blobs, `.partial-${hexOf(digest)}-${ownerTag()}-${randomBytes(6).toString('hex')}`);
    const fh = await open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644);
    return new BlobWriter(this, fh, tmp, digest, size, what);
  }

  private swept: Promise<void> | undefined;

  /**
   * Removes partial files killed processes left behind: those whose owner (named in them) is gone, and any older
   * than a day (from another host, which cannot be asked).
   */
  private async sweep(): Promise<void> {
    const names = await readdir(this.blobs).catch(() => [] as string[]);
    const old = Date.now() - 24 * 3600_000;
    for (const n of names) {
      if (!n.startsWith('.partial-')) continue;
      if (deadOwner(n, PARTIAL)) {
        await rm(join(this.blobs, n), { force: true });
        continue;
      }
      const st = await stat(join(this.blobs, n)).catch(() => undefined);
      if (st && st.mtimeMs < old) await rm(join(this.blobs, n), { force: true });
    }
  }

  /**
   * Held while one process fetches a blob, so concurrent runs fetch it once: the others wait, then find it in the
   * cache. Integrity never depends on it (blobs appear only by rename of verified bytes).
   */
  lock(digest: string, o: LockOptions): Promise<HeldLock> {
    return acquireLock(join(this.root, 'locks', `${hexOf(digest)}.lock`), o);
  }

  private refPath(ref: string): string {
    return join(this.refs, `${sha256(ref).slice(7)}.json`);
  }

  /** The digest a reference (tag) resolved to when it was last pulled. */
  async getRef(ref: string): Promise<string | undefined> {
    try {
      const j = JSON.parse(await readFile(this.refPath(ref), 'utf8')) as { ref?: unknown; digest?: unknown };
      return j.ref === ref && typeof j.digest === 'string' && /^sha256:[a-f0-9]{64}$/.test(j.digest) ? j.digest : undefined;
    } catch {
      return undefined;
    }
  }

  async setRef(ref: string, digest: string): Promise<void> {
    await mkdir(this.refs, { recursive: true, mode: 0o755 });
    const p = this.refPath(ref);
    const tmp = `${p}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, `${JSON.stringify({ ref, digest })}\n`, { mode: 0o644 });
      await rename(tmp, p);
    } finally {
      await rm(tmp, { force: true });
    }
  }
}

const PARTIAL = /^\.partial-[0-9a-f]{64}-(\d+)\.([0-9a-f]{8})-[0-9a-f]{12}$/;

/** Sequential writer of one blob into a private temp file; commit() verifies, then publishes it. */
export class BlobWriter {
  private hash: Hash = createHash('sha256');
  private done = false;
  offset = 0;

  constructor(
    private readonly cache: BlobCache,
    private readonly fh: FileHandle,
    readonly tmp: string,
    readonly digest: string,
    readonly size: number,
    private readonly what: string,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    if (this.offset + chunk.length > this.size) throw tooLarge(this.what, this.size);
    // After the first chunk: a partial file exists (see core/test-hook.ts).
    if (this.offset > 0) await testHook('during', 'source/fetch-blob');
    this.hash.update(chunk);
    let off = 0;
    try {
      while (off < chunk.length) {
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.offset + off);
        off += bytesWritten;
      }
    } catch (e) {
      // Not a network failure: a registry client must not retry it or call the registry unreachable.
      throw this.writeError(e);
    }
    this.offset += chunk.length;
  }

  private writeError(e: unknown): unknown {
    return asWriteError(e, { area: 'cache', what: this.what, path: this.cache.blobs, needBytes: this.size, needNote: 'the whole blob' });
  }

  /** Starts over (a registry that cannot resume a range). */
  async reset(): Promise<void> {
    await this.fh.truncate(0);
    this.hash = createHash('sha256');
    this.offset = 0;
  }

  async commit(): Promise<string> {
    if (this.offset < this.size) throw truncated(this.what, this.offset, this.size);
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.digest) throw digestMismatch(this.what, this.digest, got);
    try {
      await this.fh.sync();
    } catch (e) {
      throw this.writeError(e);
    }
    await this.fh.close();
    this.done = true;
    const final = this.cache.pathOf(this.digest);
    await rename(this.tmp, final);
    await syncDir(this.cache.blobs);
    return final;
  }

  /** Discards the temp file unless it was committed; safe to call more than once. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => {});
    await rm(this.tmp, { force: true });
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY).catch(() => undefined);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    /* some file systems cannot fsync a directory; the rename is still atomic */
  } finally {
    await fh.close();
  }
}

export function cacheError(root: string, e: unknown, needBytes?: number): Img2vmError {
  if (e instanceof Img2vmError) return e;
  if (isNoSpace(e)) return noSpaceError({ area: 'cache', what: 'the blob cache', path: root, ...(needBytes !== undefined ? { needBytes } : {}) }, e);
  return new Img2vmError('outputNotWritable', `cannot write the blob cache ${root}: ${(e as Error).message}`, 'free space there, fix its permissions, or set XDG_CACHE_HOME elsewhere', { cause: e });
}
