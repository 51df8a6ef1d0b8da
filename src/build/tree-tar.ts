// Tars a whole directory tree into one layer file: owners, modes, xattrs (security.capability), devices, hard links, sparse files as zeros.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { Img2vmError } from '../core/errors.js';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarWriteEntry, type TarWriteType } from './tar-header.js';
import { readTreeXattrs } from './xattr-dump.js';

const FLUSH_AT = 1 << 20;
const READ_CHUNK = 1 << 20;

export interface TreeTarResult {
  /** sha256:… of the tar bytes: the layer's diff_id (and digest: it is stored uncompressed). */
  digest: string;
  size: number;
  entries: number;
}

export interface TreeTarOptions {
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
  /** Paths (binary strings, relative) left out, with everything beneath them. */
  exclude?: ReadonlySet<string>;
}

/** Buffers small writes into large ones and hashes everything written. */
class Out {
  private buf = Buffer.allocUnsafe(FLUSH_AT);
  private len = 0;
  private readonly hash = createHash('sha256');
  size = 0;

  constructor(private readonly fh: FileHandle) {}

  async put(b: Buffer): Promise<void> {
    this.hash.update(b);
    this.size += b.length;
    if (this.len + b.length > FLUSH_AT) await this.flush();
    if (b.length >= FLUSH_AT) {
      await this.writeAll(b);
      return;
    }
    b.copy(this.buf, this.len);
    this.len += b.length;
  }

  async zeros(n: number): Promise<void> {
    const z = Buffer.alloc(Math.min(n, READ_CHUNK));
    while (n > 0) {
      const k = Math.min(n, z.length);
      await this.put(k === z.length ? z : z.subarray(0, k));
      n -= k;
    }
  }

  async flush(): Promise<void> {
    if (this.len === 0) return;
    await this.writeAll(this.buf.subarray(0, this.len));
    // The buffer handed to write must not be reused while the write is in flight: it is awaited, so it is not.
    this.len = 0;
  }

  private async writeAll(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.fh.write(b, off, b.length - off);
      off += bytesWritten;
    }
  }

  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

function typeOf(st: Stats): TarWriteType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined;
}

/** Linux's dev_t encoding (glibc's gnu_dev_major/minor). */
export function devNumbers(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return { major, minor };
}

const bin = (p: string) => Buffer.from(p, 'latin1');

/**
 * Writes root's tree as an uncompressed tar to dest, in byte order of names (so the same tree gives the
 * same bytes), and returns its digest. Names are kept as raw bytes; a hard-linked inode is stored once and
 * linked to after; sockets are skipped (no tar can hold one). Sparse files are written out as zeros: the
 * flattener turns zero blocks back into holes.
 */
export async function writeTreeTar(root: string, dest: string, o: TreeTarOptions = {}): Promise<TreeTarResult> {
  const warn = o.onWarning ?? (() => {});
  const xattrs = await readTreeXattrs(root, o.signal);
  const fh = await open(dest, 'wx', 0o644);
  const out = new Out(fh);
  const links = new Map<string, string>();
  let entries = 0;
  const rootBin = Buffer.from(root, 'utf8').toString('latin1');
  const abs = (rel: string) => bin(rel === '' ? rootBin : `${rootBin}/${rel}`);

  const emit = async (rel: string, st: Stats): Promise<void> => {
    const type = typeOf(st);
    if (!type) {
      warn(`not in the built layer: /${Buffer.from(rel, 'latin1').toString('utf8')} (a socket)`);
      return;
    }
    const e: TarWriteEntry = {
      path: rel,
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: Math.floor(st.mtimeMs / 1000),
      size: 0,
    };
    if (type !== 'dir' && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = links.get(key);
      if (first !== undefined) {
        entries++;
        await out.put(encodeHeader({ ...e, type: 'link', linkpath: first }));
        return;
      }
      links.set(key, rel);
    }
    const xs = xattrs.get(rel);
    if (xs) e.xattrs = xs;
    if (type === 'symlink') e.linkpath = (readlinkSync(abs(rel), { encoding: 'buffer' }) as Buffer).toString('latin1');
    if (type === 'char' || type === 'block') {
      const d = devNumbers(st.rdev);
      e.devmajor = d.major;
      e.devminor = d.minor;
    }
    if (type === 'file') e.size = st.size;
    entries++;
    await out.put(encodeHeader(e));
    if (type === 'file') await copyContent(abs(rel), st, out, rel, warn, o.signal);
  };

  const walk = async (rel: string): Promise<void> => {
    const names = readdirSync(abs(rel), { encoding: 'buffer' }).sort(Buffer.compare);
    for (const n of names) {
      o.signal?.throwIfAborted();
      const child = rel === '' ? n.toString('latin1') : `${rel}/${n.toString('latin1')}`;
      if (o.exclude?.has(child)) continue;
      const st = lstatSync(abs(child));
      await emit(child, st);
      if (st.isDirectory()) await walk(child);
    }
  };

  try {
    await emit('', lstatSync(abs('')));
    await walk('');
    await out.put(END_OF_ARCHIVE);
    await out.flush();
    await fh.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new Img2vmError(
        'outputNotWritable',
        `no space left while writing the built layer ${dest}`,
        'free space in the cache directory (img2vm cache prune), or set XDG_CACHE_HOME elsewhere',
        { cause: e },
      );
    }
    throw e;
  } finally {
    await fh.close();
  }
  return { digest: out.digest(), size: out.size, entries };
}

/** Exactly st.size bytes of the file (a file that shrank meanwhile is padded with zeros), then the block padding. */
async function copyContent(
  path: Buffer,
  st: Stats,
  out: Out,
  rel: string,
  warn: (m: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  let left = st.size;
  // Nothing allocated at all: a hole from end to end, no need to read it.
  if (st.blocks === 0 && left > 0) {
    await out.zeros(left);
  } else if (left > 0) {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(left, READ_CHUNK));
      let pos = 0;
      while (left > 0) {
        signal?.throwIfAborted();
        const { bytesRead } = await fh.read(buf, 0, Math.min(left, buf.length), pos);
        if (bytesRead === 0) break;
        await out.put(buf.subarray(0, bytesRead));
        pos += bytesRead;
        left -= bytesRead;
      }
    } finally {
      await fh.close();
    }
    if (left > 0) {
      warn(`/${Buffer.from(rel, 'latin1').toString('utf8')} shrank while it was being stored; padded with zeros`);
      await out.zeros(left);
    }
  }
  await out.zeros(padding(st.size));
}
