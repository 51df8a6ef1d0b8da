// Streaming tar reader that keeps names and PAX values as raw bytes, so xattrs (file capabilities) and non-UTF-8 names survive exactly.
//
// tar-stream decodes PAX values as UTF-8, which corrupts binary xattr values such as a
// security.capability containing 0x80 (cap_setuid); that is why layers are parsed here.
// Names are "binary strings": one char per byte (latin1), lossless and cheap to compare.

import { MAX_EXTENDED_HEADER_BYTES, overLimit } from './limits.js';
import { showPath } from './tree-path.js';
import { NO_XATTRS } from './tree.js';

/** A malformed or truncated archive; the caller turns it into a badImage error. */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo' | 'unknown';

export interface TarHeader {
  /** Raw path bytes as a latin1 string. */
  path: string;
  /** Raw link target bytes as a latin1 string ('' when none). */
  linkpath: string;
  type: TarEntryType;
  /** The raw typeflag character, for messages about unknown types. */
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content that follow (0 for header-only types, as Go's archive/tar reads them). */
  size: number;
  /** Seconds since the epoch, possibly fractional (PAX); rounded to a double, see mtimeExact. */
  mtime: number;
  /** mtime exactly: whole seconds (negative before 1970) and nanoseconds 0..999999999. */
  mtimeExact: TarTime;
  /** From a PAX atime record, when there is one. */
  atime?: TarTime;
  /** From a PAX ctime record, when there is one. */
  ctime?: TarTime;
  devmajor: number;
  devminor: number;
  /** xattr name (latin1 binary string) → raw value; the shared NO_XATTRS (not to be changed) when there are none. */
  xattrs: Map<string, Buffer>;
  /** POSIX ACLs in text form (SCHILY.acl.access / .default, as GNU tar --acls and star write them), when present. */
  aclText?: { access?: string; default?: string };
}

/** A point in time as tar carries it: sec may be negative, 0 <= nsec < 1e9 (the shape of tree.ts's Timestamp). */
export interface TarTime {
  sec: number;
  nsec: number;
}

const BLOCK = 512;

/** Pulls bytes out of an async iterator of chunks, handing out zero-copy slices. */
export class ByteSource {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private done = false;

  constructor(private readonly it: AsyncIterator<Buffer | Uint8Array | string>) {}

  private async fill(): Promise<boolean> {
    while (this.off >= this.buf.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      const v = r.value;
      this.buf = typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.off = 0;
    }
    return true;
  }

  /** Up to max bytes (a slice of the current chunk), or null at end of input. */
  async read(max: number): Promise<Buffer | null> {
    if (this.off >= this.buf.length && !(await this.fill())) return null;
    const n = Math.min(max, this.buf.length - this.off);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }

  /** Exactly n bytes; null if the input ended before the first byte, an error if it ended midway. */
  async readExact(n: number, what: string): Promise<Buffer | null> {
    const first = await this.read(n);
    if (first === null) return null;
    if (first.length === n) return first;
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const b = await this.read(n - got);
      if (b === null) throw new TarFormatError(`unexpected end of data in ${what}`);
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts, n);
  }

  /** Exactly n bytes if they are already buffered (a zero-copy slice, consumed), else null without consuming anything. */
  takeBuffered(n: number): Buffer | null {
    if (this.buf.length - this.off < n) return null;
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }

  async skip(n: number, what: string): Promise<void> {
    while (n > 0) {
      const b = await this.read(n);
      if (b === null) throw new TarFormatError(`unexpected end of data in ${what}`);
      n -= b.length;
    }
  }

  async drain(): Promise<void> {
    while ((await this.read(1 << 30)) !== null) {
      /* discard: reading to the end lets the decompressor verify its checksum */
    }
  }

  async cancel(): Promise<void> {
    this.done = true;
    await this.it.return?.();
  }
}

export class TarReader {
  private remaining = 0;
  private padding = 0;
  private ended = false;
  private current = '';

  constructor(private readonly src: ByteSource) {}

  /** The next entry's header, or null at the end of the archive; unread content of the previous entry is skipped. */
  async next(): Promise<TarHeader | null> {
    if (this.ended) return null;
    await this.src.skip(this.remaining + this.padding, `the content of "${this.current}"`);
    this.remaining = this.padding = 0;

    let pax: Pax | null = null;
    let paxBytes = 0;
    let longName: string | null = null;
    let longLink: string | null = null;
    for (;;) {
      const blk = await this.src.readExact(BLOCK, 'a tar header');
      if (blk === null) {
        if (pax || longName !== null || longLink !== null) throw new TarFormatError('archive ends after an extended header');
        this.ended = true;
        return null;
      }
      if (isZero(blk)) {
        this.ended = true;
        await this.src.drain();
        return null;
      }
      verifyChecksum(blk);
      const flag = blk[156] ?? 0;
      const size = parseCount(blk, 124, 12, 'size', blk);
      switch (flag) {
        case 0x78: // 'x' PAX extended header for the next entry
          // Consecutive ones add up: the limit is on what one entry carries.
          paxBytes += size;
          pax = parsePax(await this.extended(size, 'PAX header', paxBytes), pax);
          continue;
        case 0x67: // 'g' PAX global header: ignored, as docker does
          await this.src.skip(size + pad(size), 'a PAX global header');
          continue;
        case 0x4c: // 'L' GNU long name
          longName = cstring(await this.extended(size, 'GNU long name'));
          continue;
        case 0x4b: // 'K' GNU long link name
          longLink = cstring(await this.extended(size, 'GNU long link name'));
          continue;
        case 0x53: // 'S'
          throw new TarFormatError('GNU sparse entries are not supported');
        case 0x56: // 'V' volume label
          await this.src.skip(size + pad(size), 'a volume label');
          continue;
      }
      const h = this.decode(blk, flag, size);
      if (longName !== null) h.path = longName;
      if (longLink !== null) h.linkpath = longLink;
      if (pax) applyPax(h, pax);
      // Pre-POSIX archives mark directories only by a trailing slash. As Go's archive/tar (which
      // writes and reads docker layers) does, the rule is for the V7 typeflag '\0' alone and is
      // judged on the final path: GNU tar and Python's tarfile cut the ustar name field of a long
      // path at 100 bytes, which can leave a '/' at its end on a regular file ('0').
      if (flag === 0 && h.path.endsWith('/')) h.type = 'dir';
      // Go's archive/tar (which writes and reads docker layers) gives header-only types no content.
      const dataSize = h.type === 'file' || h.type === 'unknown' || flag === 0x44 /* 'D' dumpdir */ ? h.size : 0;
      if (h.type !== 'file') h.size = 0;
      this.remaining = dataSize;
      this.padding = pad(dataSize);
      this.current = h.path;
      return h;
    }
  }

  /**
   * The current entry's content as it streams, without copying: each slice is valid until the next
   * one is requested, so a consumer writes or copies it before pulling again. Reading stops early
   * if the consumer stops; next() skips what was left.
   */
  async *data(): AsyncGenerator<Buffer, void, undefined> {
    while (this.remaining > 0) {
      const b = await this.src.read(this.remaining);
      if (b === null) throw new TarFormatError(`unexpected end of data in the content of "${this.current}"`);
      this.remaining -= b.length;
      yield b;
    }
  }

  /**
   * The current entry's whole content if it is already buffered (so no await is needed), as a
   * zero-copy slice valid until the next read; else null, and nothing is consumed. Small files
   * take this path, which saves the cost of streaming them.
   */
  takeBufferedData(): Buffer | null {
    const b = this.src.takeBuffered(this.remaining);
    if (b) this.remaining = 0;
    return b;
  }

  /** Streams the current entry's content to onChunk (slices that are valid only during the call). */
  async readData(onChunk: (chunk: Buffer) => void): Promise<void> {
    while (this.remaining > 0) {
      const b = await this.src.read(this.remaining);
      if (b === null) throw new TarFormatError(`unexpected end of data in the content of "${this.current}"`);
      this.remaining -= b.length;
      onChunk(b);
    }
  }

  private async extended(size: number, what: string, total = size): Promise<Buffer> {
    if (total > MAX_EXTENDED_HEADER_BYTES) {
      throw overLimit(
        'MAX_EXTENDED_HEADER_BYTES',
        MAX_EXTENDED_HEADER_BYTES,
        `a layer has a ${what} of ${total} bytes for one entry (a path, a link target and extended attributes take a few KiB)`,
        'the layer was written by a broken or hostile tool; rebuild the image',
      );
    }
    const data = (await this.src.readExact(size, `a ${what}`)) ?? Buffer.alloc(0);
    if (data.length < size) throw new TarFormatError(`unexpected end of data in a ${what}`);
    const copy = Buffer.from(data); // the slice may belong to a chunk that is about to be released
    await this.src.skip(pad(size), `a ${what}`);
    return copy;
  }

  private decode(b: Buffer, flag: number, size: number): TarHeader {
    const ustar = b.toString('latin1', 257, 263) === 'ustar\0';
    const gnu = b.toString('latin1', 257, 265) === 'ustar  \0';
    let name = cstring(b.subarray(0, 100));
    if (ustar && b[345] !== 0) name = `${cstring(b.subarray(345, 500))}/${name}`;
    const hasDev = ustar || gnu;
    const mtime = parseNumeric(b, 136, 12, 'mtime');
    return {
      path: name,
      linkpath: cstring(b.subarray(157, 257)),
      type: toType(flag),
      typeflag: flag === 0 ? '\\0' : String.fromCharCode(flag),
      mode: parseCount(b, 100, 8, 'mode', b) & 0o7777,
      uid: parseCount(b, 108, 8, 'uid', b),
      gid: parseCount(b, 116, 8, 'gid', b),
      size,
      mtime,
      mtimeExact: { sec: mtime, nsec: 0 },
      devmajor: hasDev ? parseCount(b, 329, 8, 'devmajor', b) : 0,
      devminor: hasDev ? parseCount(b, 337, 8, 'devminor', b) : 0,
      xattrs: NO_XATTRS,
    };
  }
}

function toType(flag: number): TarEntryType {
  switch (flag) {
    case 0: // V7 regular file, unless its final path ends in '/' (see next())
    case 0x30:
    case 0x37: // contiguous file
      return 'file';
    case 0x31:
      return 'link';
    case 0x32:
      return 'symlink';
    case 0x33:
      return 'char';
    case 0x34:
      return 'block';
    case 0x35:
    case 0x44: // GNU dumpdir: a directory followed by a listing we do not need
      return 'dir';
    case 0x36:
      return 'fifo';
    default:
      return 'unknown';
  }
}

interface Pax {
  records: Map<string, Buffer>;
}

function parsePax(buf: Buffer, prev: Pax | null): Pax {
  const records = prev ? prev.records : new Map<string, Buffer>();
  let i = 0;
  while (i < buf.length) {
    if (buf[i] === 0) break; // NUL padding some writers leave
    let j = i;
    while (j < buf.length && buf[j]! >= 0x30 && buf[j]! <= 0x39) j++;
    if (j === i || buf[j] !== 0x20) throw new TarFormatError('malformed PAX record length');
    const len = Number(buf.toString('latin1', i, j));
    const end = i + len;
    if (!(len > j - i + 1) || end > buf.length || buf[end - 1] !== 0x0a) throw new TarFormatError('malformed PAX record');
    const eq = buf.indexOf(0x3d, j + 1);
    if (eq < 0 || eq >= end - 1) throw new TarFormatError('malformed PAX record: no "="');
    records.set(buf.toString('latin1', j + 1, eq), buf.subarray(eq + 1, end - 1));
    i = end;
  }
  return { records };
}

function applyPax(h: TarHeader, pax: Pax): void {
  for (const [key, value] of pax.records) {
    switch (key) {
      case 'path':
        if (value.length) h.path = value.toString('latin1');
        break;
      case 'linkpath':
        if (value.length) h.linkpath = value.toString('latin1');
        break;
      case 'size':
        h.size = paxInt(value, key);
        break;
      case 'uid':
        h.uid = paxInt(value, key);
        break;
      case 'gid':
        h.gid = paxInt(value, key);
        break;
      case 'mtime':
        h.mtimeExact = parsePaxTime(value.toString('latin1'), key);
        h.mtime = h.mtimeExact.sec + h.mtimeExact.nsec / 1e9;
        break;
      case 'atime':
        h.atime = parsePaxTime(value.toString('latin1'), key);
        break;
      case 'ctime':
        h.ctime = parsePaxTime(value.toString('latin1'), key);
        break;
      case 'SCHILY.acl.access':
        h.aclText = { ...h.aclText, access: value.toString('latin1') };
        break;
      case 'SCHILY.acl.default':
        h.aclText = { ...h.aclText, default: value.toString('latin1') };
        break;
      default:
        if ((key.startsWith('SCHILY.xattr.') || key.startsWith('LIBARCHIVE.xattr.')) && h.xattrs === NO_XATTRS) h.xattrs = new Map();
        if (key.startsWith('SCHILY.xattr.')) {
          h.xattrs.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value));
        } else if (key.startsWith('LIBARCHIVE.xattr.')) {
          h.xattrs.set(percentDecode(key.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(value.toString('latin1'), 'base64'));
        } else if (key.startsWith('GNU.sparse.')) {
          throw new TarFormatError('GNU sparse entries are not supported');
        }
    }
  }
}

function paxInt(v: Buffer, key: string): number {
  const s = v.toString('latin1');
  if (!/^[0-9]{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) throw new TarFormatError(`malformed PAX ${key} "${s}"`);
  return Number(s);
}

/**
 * A PAX time ("1700000000.123456789", "-1.5", "12."), exactly: digits beyond nanoseconds are cut
 * off (as Go's archive/tar does) and negative times are normalised so that nsec stays >= 0.
 */
export function parsePaxTime(s: string, key = 'time'): TarTime {
  const m = /^(-?)([0-9]{1,16})(?:\.([0-9]*))?$/.exec(s);
  const whole = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(whole)) throw new TarFormatError(`malformed PAX ${key} "${s.slice(0, 40)}"`);
  const nsec = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (m[1] !== '-') return { sec: whole, nsec };
  return nsec === 0 ? { sec: whole === 0 ? 0 : -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1e9 - nsec };
}

function percentDecode(s: string): string {
  return s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

function cstring(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.toString('latin1', 0, nul < 0 ? b.length : nul);
}

function pad(n: number): number {
  const r = n % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function verifyChecksum(b: Buffer): void {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  const want = parseNumeric(b, 148, 8, 'checksum');
  if (want !== unsigned && want !== signed) {
    throw new TarFormatError('bad tar header checksum (not a tar archive, or damaged)');
  }
}

/**
 * A header number that cannot be negative (a size, a mode, an id, a device number): a negative
 * base-256 value is a damaged header, not something to carry on with.
 */
function parseCount(b: Buffer, off: number, len: number, what: string, header: Buffer): number {
  const n = parseNumeric(b, off, len, what);
  if (n < 0) throw new TarFormatError(`the tar header of "${showPath(cstring(header.subarray(0, 100)))}" has a negative ${what}: ${what} ${n}`);
  return n;
}

/** Octal (space/NUL padded) or base-256 (high bit set) numbers, as GNU tar and Go write them. */
export function parseNumeric(b: Buffer, off: number, len: number, what: string): number {
  const first = b[off]!;
  if (first & 0x80) {
    const neg = (first & 0x40) !== 0;
    let x = 0n;
    for (let i = 0; i < len; i++) {
      let c = b[off + i]!;
      if (neg) c ^= 0xff;
      if (i === 0) c &= 0x7f;
      x = (x << 8n) | BigInt(c);
    }
    const n = neg ? -Number(x) - 1 : Number(x);
    if (!Number.isSafeInteger(n)) throw new TarFormatError(`tar header ${what} out of range`);
    return n;
  }
  let s = off;
  let e = off + len;
  while (s < e && (b[s] === 0x20 || b[s] === 0)) s++;
  while (e > s && (b[e - 1] === 0x20 || b[e - 1] === 0)) e--;
  if (s === e) return 0;
  let n = 0;
  for (let i = s; i < e; i++) {
    const c = b[i]!;
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`bad tar header ${what} field (not a tar archive, or damaged)`);
    n = n * 8 + (c - 0x30);
  }
  return n;
}
