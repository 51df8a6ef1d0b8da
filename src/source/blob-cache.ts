// Registry blobs in the store, shared by concurrent img2vm processes: blobs appear under their digest only whole and verified.
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';
import { asWriteError, isNoSpace, noSpaceError } from '../core/no-space.js';
import { testHook } from '../core/test-hook.js';
import type { LockOptions } from '../core/lock.js';
import type { Scope } from '../core/scope.js';
import { writeRecord, type BlobKey, type Check, type Draft, type Store } from '../store/index.js';
import { digestMismatch, hexOf, sha256, sha256Hash, tooLarge, truncated, verified } from './digest.js';

/**
 * Opens a file for reading without letting what sits at its name block or feed the reader: O_NONBLOCK so a FIFO
 * opens at once, O_NOFOLLOW (unless follow) so a symlink is not taken, then fstat of what was opened must be a
 * regular file (a FIFO or device is closed unread). Undefined when nothing is there.
 */
export async function openRegularFile(
  path: string,
  follow = false,
): Promise<{ fh: FileHandle; size: number } | undefined> {
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
 * The registry blobs of the store (kind blob: <root>/blobs/sha256/<hex>) and the tags pulled
 * (<root>/refs/<sha256 of the reference>.json: tag → digest). A blob appears only by the store's rename of
 * fully written, fsynced bytes whose digest was checked as they came, so readers never see a partial blob, and
 * two writers of one blob both succeed (the second rename replaces identical bytes).
 */
export class BlobCache {
  readonly blobs: string;
  readonly refs: string;

  constructor(readonly store: Store) {
    this.blobs = store.dir('blob');
    this.refs = join(store.root, 'refs');
  }

  get root(): string {
    return this.store.root;
  }

  pathOf(digest: string): string {
    return this.store.path('blob', key(digest));
  }

  /** Whether the blob is present (with the expected size, when given). */
  async has(digest: string, size?: number): Promise<boolean> {
    const st = await stat(this.pathOf(digest)).catch(() => undefined);
    return !!st?.isFile() && (size === undefined || st.size === size);
  }

  /** Holds the blob for this run (prune leaves it alone) and records its use; it need not be there yet. */
  async hold(digest: string, scope: Scope): Promise<void> {
    await this.store.hold('blob', key(digest), scope);
  }

  /** A small blob's bytes, verified (unless the store trusts what entered it); a damaged entry is removed so it is fetched again. */
  async read(digest: string, max: number): Promise<Buffer | undefined> {
    const f = await openRegularFile(this.pathOf(digest)).catch(() => undefined);
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
    if (this.store.verifyOnRead && sha256(buf) !== digest) {
      await this.store.discard('blob', key(digest), ino);
      return undefined;
    }
    return buf;
  }

  /** Hashes a stored blob (only its size, when the store trusts what entered it); a damaged one is removed and false returned. */
  async verify(digest: string, size: number): Promise<boolean> {
    if (!this.store.verifyOnRead) return this.has(digest, size);
    const got = await digestOf(this.pathOf(digest)).catch(() => undefined);
    if (!got) return false;
    if (got.size === size && got.digest === digest) return true;
    await this.store.discard('blob', key(digest), got.ino);
    return false;
  }

  /** Streams a blob, verifying it again on the way unless the store trusts it (a cache on a failing disk must not poison images). */
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
    return this.store.verifyOnRead ? verified(source, digest, size, what) : source;
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
    const draft = await this.store.draft('blob', key(digest));
    try {
      return new BlobWriter(this, draft, await open(draft.path, 'r+'), digest, size, what);
    } catch (e) {
      await draft.discard();
      throw e;
    }
  }

  /**
   * The blob, fetched by fill() once across processes when it is not in the store (whole and verified): the first
   * process fetches under the blob's lock, the others wait and then find it. Held for the scope either way.
   */
  async fetch(
    digest: string,
    size: number,
    scope: Scope,
    lock: LockOptions,
    fill: (w: BlobWriter) => Promise<void>,
  ): Promise<void> {
    const what = `blob ${digest}`;
    await this.store.ensure('blob', key(digest), {
      scope,
      lock,
      check: blobCheck(digest, size),
      make: async (draft) => {
        const w = new BlobWriter(this, draft, await open(draft.path, 'r+'), digest, size, what);
        try {
          await fill(w);
          await w.commit();
        } finally {
          await w.abort();
        }
      },
    });
  }

  private refPath(ref: string): string {
    // A file name, not a check of content: not counted as hashing.
    return join(this.refs, `${createHash('sha256').update(ref).digest('hex')}.json`);
  }

  /** The digest a reference (tag) resolved to when it was last pulled. */
  async getRef(ref: string): Promise<string | undefined> {
    try {
      const j = JSON.parse(await readFile(this.refPath(ref), 'utf8')) as { ref?: unknown; digest?: unknown };
      return j.ref === ref && typeof j.digest === 'string' && /^sha256:[a-f0-9]{64}$/.test(j.digest)
        ? j.digest
        : undefined;
    } catch {
      return undefined;
    }
  }

  async setRef(ref: string, digest: string): Promise<void> {
    await writeRecord(this.refPath(ref), `${JSON.stringify({ ref, digest })}\n`);
  }

  /** Tag records whose manifest blob is gone point at nothing: dropped once prune has removed it. */
  async dropDanglingRefs(): Promise<void> {
    for (const name of await readdir(this.refs).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      try {
        const j = JSON.parse(await readFile(join(this.refs, name), 'utf8')) as { digest?: unknown };
        if (typeof j.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(j.digest)) continue;
        if (!(await stat(this.pathOf(j.digest)).catch(() => undefined)))
          await rm(join(this.refs, name), { force: true });
      } catch {
        /* unreadable: getRef ignores it */
      }
    }
  }
}

/** A stored blob's SHA-256, size and inode; undefined when nothing is there (a FIFO or a link is refused, unread). */
async function digestOf(path: string): Promise<{ digest: string; size: number; ino: number } | undefined> {
  const f = await openRegularFile(path);
  if (!f) return undefined;
  const h = sha256Hash();
  let size = 0;
  try {
    const { ino } = await f.fh.stat();
    for await (const c of f.fh.createReadStream({ autoClose: false })) {
      size += (c as Buffer).length;
      h.update(c as Buffer);
    }
    return { digest: `sha256:${h.digest('hex')}`, size, ino };
  } finally {
    await f.fh.close();
  }
}

/** A blob is whole when it is a regular file (of its size, when known), intact when its bytes hash to its digest. */
export function blobCheck(digest: string, size?: number): Check {
  return {
    whole: async (p) => {
      const st = await lstat(p);
      return st.isFile() && (size === undefined || st.size === size);
    },
    intact: async (p) => (await digestOf(p))?.digest === digest,
  };
}

/** A digest as the store's blob key (hexOf refuses anything but a sha256 digest, as a hostile manifest may carry). */
function key(digest: string): BlobKey {
  hexOf(digest);
  return digest as BlobKey;
}

/** Sequential writer of one blob into the store's draft; commit() checks size and digest, then publishes it. */
export class BlobWriter {
  private hash: Hash = sha256Hash();
  private done = false;
  offset = 0;

  constructor(
    private readonly cache: BlobCache,
    private readonly draft: Draft,
    private readonly fh: FileHandle,
    readonly digest: string,
    readonly size: number,
    private readonly what: string,
  ) {}

  get tmp(): string {
    return this.draft.path;
  }

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
    return asWriteError(e, {
      area: 'cache',
      what: this.what,
      path: this.cache.blobs,
      needBytes: this.size,
      needNote: 'the whole blob',
    });
  }

  /** Starts over (a registry that cannot resume a range). */
  async reset(): Promise<void> {
    await this.fh.truncate(0);
    this.hash = sha256Hash();
    this.offset = 0;
  }

  /** Checked as the bytes came (size and digest); the store fsyncs and renames. */
  async commit(): Promise<string> {
    if (this.offset < this.size) throw truncated(this.what, this.offset, this.size);
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.digest) throw digestMismatch(this.what, this.digest, got);
    await this.fh.close();
    this.done = true;
    try {
      return await this.draft.publish();
    } catch (e) {
      throw this.writeError(e);
    }
  }

  /** Discards the draft unless it was committed; safe to call more than once. */
  async abort(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.fh.close().catch(() => {});
    }
    await this.draft.discard();
  }
}

export function cacheError(root: string, e: unknown, needBytes?: number): Img2vmError {
  if (e instanceof Img2vmError) return e;
  if (isNoSpace(e))
    return noSpaceError(
      { area: 'cache', what: 'the blob cache', path: root, ...(needBytes !== undefined ? { needBytes } : {}) },
      e,
    );
  return new Img2vmError(
    'outputNotWritable',
    `cannot write the blob cache ${root}: ${(e as Error).message}`,
    'free space there, fix its permissions, or set XDG_CACHE_HOME elsewhere',
    { cause: e },
  );
}
