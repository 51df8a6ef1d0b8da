// Streaming tar reader that keeps names and PAX values as raw bytes, so xattrs (file capabilities) and non-UTF-8 names survive exactly.
//
// tar-stream decodes PAX values as UTF-8, which corrupts binary xattr values such as a
// security.capability containing 0x80 (cap_setuid); that is why layers are parsed here.
// Names are "binary strings": one char per byte (latin1), lossless and cheap to compare.

import { Img2vmError } from '../core/errors.js';
import { ByteSource, TarFormatError } from './byte-source.js';
import { MAX_EXTENDED_HEADER_BYTES, MAX_SPARSE_REGIONS, overLimit } from './limits.js';
import { showPath } from './tree-path.js';
import { NO_XATTRS } from './tree.js';

export { ByteSource, TarFormatError };

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
  /**
   * A sparse file (GNU's old 'S' entry, or PAX GNU.sparse format 0.0, 0.1 or 1.0): where its data
   * lies, in file order, validated; size is then the file's real size and the rest of it is holes.
   */
  sparse?: SparseRegions;
}

/** A sparse file's data regions: offsets[i] and lengths[i] in bytes, in order, not overlapping. */
export interface SparseRegions {
  offsets: number[];
  lengths: number[];
}

/** A point in time as tar carries it: sec may be negative, 0 <= nsec < 1e9 (the shape of tree.ts's Timestamp). */
export interface TarTime {
  sec: number;
  nsec: number;
}

const BLOCK = 512;
/** What holes are read as by those who want bytes (shared, never written to). */
const ZEROS = Buffer.alloc(1024 * 1024);

const SPARSE_HINT =
  'no tar writer makes such a sparse map: the layer was written by a broken or hostile tool, and pulling it again will not help; rebuild the image with a standard tar writer';

/** A sparse map that no tar writer makes (overlapping, out of order, past the end, not matching the data). */
function badSparse(path: string, what: string): Img2vmError {
  return new Img2vmError('badImage', `layer entry "${showPath(path)}" is a sparse file whose map ${what}`, SPARSE_HINT);
}

function tooManyRegions(path: string, n: number): Img2vmError {
  return overLimit(
    'MAX_SPARSE_REGIONS',
    MAX_SPARSE_REGIONS,
    `layer entry "${showPath(path)}" is a sparse file of ${n} or more data regions`,
    'rebuild the image with that file written without holes (GNU tar without -S, bsdtar --no-read-sparse), or report the image if the file is a real one',
  );
}

/** The data a sparse reader yields as it goes: a Buffer is data, a number is that many bytes of hole. */
export type SparsePart = Buffer | number;

/** Parts with every hole made zeros, in pieces of at most 1 MiB of one shared buffer (for consumers that want bytes). */
export async function* holesAsZeros(parts: AsyncIterable<SparsePart>): AsyncGenerator<Buffer, void, undefined> {
  for await (const p of parts) {
    if (typeof p !== 'number') yield p;
    else for (let n = p; n > 0; n -= ZEROS.length) yield n >= ZEROS.length ? ZEROS : ZEROS.subarray(0, n);
  }
}

export class TarReader {
  private remaining = 0;
  private padding = 0;
  private ended = false;
  private current = '';
  /** The current entry's sparse map and how far parts() has gone through it; null for a dense entry. */
  private sparse: { regions: SparseRegions; size: number; i: number; pos: number } | null = null;

  constructor(private readonly src: ByteSource) {}

  /** The next entry's header, or null at the end of the archive; unread content of the previous entry is skipped. */
  async next(): Promise<TarHeader | null> {
    if (this.ended) return null;
    await this.src.skip(this.remaining + this.padding, `the content of "${this.current}"`);
    this.remaining = this.padding = 0;
    this.sparse = null;

    let pax: Pax | null = null;
    let paxBytes = 0;
    let longName: string | null = null;
    let longLink: string | null = null;
    for (;;) {
      const blk = await this.src.readExact(BLOCK, 'a tar header');
      if (blk === null) {
        if (pax || longName !== null || longLink !== null)
          throw new TarFormatError('archive ends after an extended header');
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
      // A sparse file's map: old GNU's follows its header, PAX 0.x's is in the records, 1.0's opens the data.
      const map = flag === 0x53 ? await this.oldGnuSparse(blk, h) : pax ? paxSparse(h, pax) : null;
      if (h.type !== 'file') h.size = 0;
      this.remaining = dataSize;
      this.padding = pad(dataSize);
      this.current = h.path; // after paxSparse(), which puts GNU.sparse.name there
      if (map) {
        if (h.type !== 'file') throw badSparse(h.path, `is on a ${h.type} entry`);
        const regions = map.regions ?? (await this.sparseMap10(h.path));
        checkSparse(h.path, regions, map.size, this.remaining);
        h.size = map.size;
        h.sparse = regions;
        this.sparse = { regions, size: map.size, i: 0, pos: 0 };
      }
      return h;
    }
  }

  /** The map of an old GNU sparse entry ('S'): up to 4 regions in the header, 21 in each extension block after it. */
  private async oldGnuSparse(blk: Buffer, h: TarHeader): Promise<{ regions: SparseRegions; size: number }> {
    const regions: SparseRegions = { offsets: [], lengths: [] };
    // As GNU tar, bsdtar and Go read it: a region whose offset field starts with NUL ends the block's list.
    const take = (b: Buffer, at: number, n: number): void => {
      for (let i = 0; i < n && b[at + 24 * i] !== 0; i++) {
        if (regions.offsets.length >= MAX_SPARSE_REGIONS) throw tooManyRegions(h.path, regions.offsets.length + 1);
        regions.offsets.push(parseNumeric(b, at + 24 * i, 12, 'sparse offset'));
        regions.lengths.push(parseNumeric(b, at + 24 * i + 12, 12, 'sparse length'));
      }
    };
    take(blk, 386, 4);
    for (let more = blk[482] !== 0; more;) {
      const ext = await this.src.readExact(BLOCK, 'a GNU sparse extension header');
      if (ext === null) throw new TarFormatError('archive ends in a GNU sparse extension header');
      take(ext, 0, 21);
      more = ext[504] !== 0;
    }
    return { regions, size: parseNumeric(blk, 483, 12, 'sparse real size') };
  }

  /**
   * PAX sparse format 1.0's map, which opens the entry's data: decimal numbers a line each (the
   * count, then offset and length of each region), padded to a whole block. Reads no further than
   * the map needs, and counts what it read off the entry's data.
   */
  private async sparseMap10(path: string): Promise<SparseRegions> {
    const nums: number[] = [];
    let want = -1; // numbers after the count, once it is known
    let digits = '';
    while (want < 0 || nums.length < want) {
      if (this.remaining < BLOCK)
        throw badSparse(path, `is longer than the entry's data (${this.remaining} bytes left)`);
      const b = await this.src.readExact(BLOCK, `the sparse map of "${path}"`);
      if (b === null) throw new TarFormatError(`unexpected end of data in the sparse map of "${path}"`);
      this.remaining -= BLOCK;
      for (let i = 0; i < BLOCK && (want < 0 || nums.length < want); i++) {
        const c = b[i]!;
        if (c >= 0x30 && c <= 0x39 && digits.length < 16) {
          digits += String.fromCharCode(c);
          continue;
        }
        if (c !== 0x0a)
          throw badSparse(
            path,
            c >= 0x30 && c <= 0x39
              ? 'has a number of more than 16 digits'
              : `has a byte 0x${c.toString(16).padStart(2, '0')} where a digit or a newline belongs`,
          );
        if (digits === '') throw badSparse(path, 'has an empty line');
        const n = Number(digits);
        digits = '';
        if (!Number.isSafeInteger(n)) throw badSparse(path, `has the number ${n}, beyond what a file size can be`);
        if (want >= 0) nums.push(n);
        else if (n > MAX_SPARSE_REGIONS) throw tooManyRegions(path, n);
        else want = 2 * n;
      }
    }
    const regions: SparseRegions = { offsets: [], lengths: [] };
    for (let i = 0; i < nums.length; i += 2) {
      regions.offsets.push(nums[i]!);
      regions.lengths.push(nums[i + 1]!);
    }
    return regions;
  }

  /**
   * The current entry's content as it streams, without copying: each slice is valid until the next
   * one is requested, so a consumer writes or copies it before pulling again. Reading stops early
   * if the consumer stops; next() skips what was left. A sparse file's holes come as zeros.
   */
  async *data(): AsyncGenerator<Buffer, void, undefined> {
    if (this.sparse) {
      yield* holesAsZeros(this.parts());
      return;
    }
    while (this.remaining > 0) {
      const b = await this.src.read(this.remaining);
      if (b === null) throw new TarFormatError(`unexpected end of data in the content of "${this.current}"`);
      this.remaining -= b.length;
      yield b;
    }
  }

  /**
   * The current entry's content as data and holes: a Buffer is data (as from data()), a number is
   * that many bytes of hole, so a consumer that can skip holes never sees their zeros (a 1 TB sparse
   * file with 4 KiB of data is 4 KiB of work). A dense entry is all data.
   */
  async *parts(): AsyncGenerator<SparsePart, void, undefined> {
    const s = this.sparse;
    if (!s) {
      yield* this.data();
      return;
    }
    const { offsets, lengths } = s.regions;
    for (; s.i < offsets.length; s.i++) {
      const at = offsets[s.i]!;
      if (at > s.pos) {
        const hole = at - s.pos;
        s.pos = at;
        yield hole;
      }
      // The map was checked against the stored size, so the data of every region is there to read.
      const end = at + lengths[s.i]!;
      while (s.pos < end) {
        const b = await this.readStored(end - s.pos);
        s.pos += b.length;
        yield b;
      }
    }
    if (s.size > s.pos) {
      const hole = s.size - s.pos;
      s.pos = s.size;
      yield hole;
    }
  }

  /**
   * The current entry's whole content if it is already buffered (so no await is needed), as a
   * zero-copy slice valid until the next read; else null, and nothing is consumed. Small files
   * take this path, which saves the cost of streaming them. Never for a sparse file.
   */
  takeBufferedData(): Buffer | null {
    if (this.sparse) return null;
    const b = this.src.takeBuffered(this.remaining);
    if (b) this.remaining = 0;
    return b;
  }

  /** Streams the current entry's content to onChunk (slices that are valid only during the call), holes as zeros. */
  async readData(onChunk: (chunk: Buffer) => void): Promise<void> {
    if (this.sparse) {
      for await (const c of this.data()) onChunk(c);
      return;
    }
    while (this.remaining > 0) {
      const b = await this.src.read(this.remaining);
      if (b === null) throw new TarFormatError(`unexpected end of data in the content of "${this.current}"`);
      this.remaining -= b.length;
      onChunk(b);
    }
  }

  /** Up to max of the entry's stored bytes (max > 0). */
  private async readStored(max: number): Promise<Buffer> {
    const b = await this.src.read(Math.min(max, this.remaining));
    if (b === null) throw new TarFormatError(`unexpected end of data in the content of "${this.current}"`);
    this.remaining -= b.length;
    return b;
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
    case 0x53: // old GNU sparse file
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
  /** PAX sparse format 0.0's map: GNU.sparse.offset and GNU.sparse.numbytes values, in record order. */
  sparse00: string[];
  /** Those records did not alternate offset, numbytes, offset ... */
  sparse00Disordered: boolean;
}

function parsePax(buf: Buffer, prev: Pax | null): Pax {
  const pax = prev ?? { records: new Map<string, Buffer>(), sparse00: [], sparse00Disordered: false };
  const records = pax.records;
  let i = 0;
  while (i < buf.length) {
    if (buf[i] === 0) break; // NUL padding some writers leave
    let j = i;
    while (j < buf.length && buf[j]! >= 0x30 && buf[j]! <= 0x39) j++;
    if (j === i || buf[j] !== 0x20) throw new TarFormatError('malformed PAX record length');
    const len = Number(buf.toString('latin1', i, j));
    const end = i + len;
    if (!(len > j - i + 1) || end > buf.length || buf[end - 1] !== 0x0a)
      throw new TarFormatError('malformed PAX record');
    const eq = buf.indexOf(0x3d, j + 1);
    if (eq < 0 || eq >= end - 1) throw new TarFormatError('malformed PAX record: no "="');
    const key = buf.toString('latin1', j + 1, eq);
    // Format 0.0 repeats these two keys, once per region: their order is the map.
    if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') {
      if ((key === 'GNU.sparse.offset') !== (pax.sparse00.length % 2 === 0)) pax.sparse00Disordered = true;
      pax.sparse00.push(buf.toString('latin1', eq + 1, end - 1));
    } else records.set(key, buf.subarray(eq + 1, end - 1));
    i = end;
  }
  return pax;
}

/**
 * A PAX sparse file's real size and, for formats 0.0 and 0.1, its map (1.0's opens the data); null
 * when the entry is not sparse. GNU.sparse.name is its real path. Versions are told apart as Go's
 * archive/tar does: by GNU.sparse.major and .minor, which 0.0 and 0.1 may lack.
 */
function paxSparse(h: TarHeader, pax: Pax): { regions?: SparseRegions; size: number } | null {
  const r = pax.records;
  const text = (k: string): string | undefined => r.get(k)?.toString('latin1');
  const major = text('GNU.sparse.major');
  const minor = text('GNU.sparse.minor');
  let v1 = false;
  if (major === '1' && minor === '0') v1 = true;
  else if (major === '0' && (minor === '0' || minor === '1')) v1 = false;
  else if (major !== undefined || minor !== undefined) {
    throw new Img2vmError(
      'badImage',
      `layer entry "${showPath(h.path)}" is a sparse file in GNU sparse format ${showPath(major ?? '?')}.${showPath(minor ?? '?')}, which img2vm does not read (it reads 0.0, 0.1 and 1.0, what GNU tar and bsdtar write)`,
      'rebuild the image with its layers written by GNU tar, bsdtar or without holes',
    );
  } else if (pax.sparse00.length === 0 && !r.has('GNU.sparse.map')) return null;
  const name = r.get('GNU.sparse.name');
  if (name?.length) h.path = name.toString('latin1');
  const realSize = r.get('GNU.sparse.size') ?? r.get('GNU.sparse.realsize');
  const size = realSize ? paxInt(realSize, 'GNU.sparse.size') : h.size;
  if (v1) return { size };
  if (pax.sparse00Disordered)
    throw badSparse(h.path, 'has GNU.sparse.offset and GNU.sparse.numbytes records that do not alternate');
  const count = text('GNU.sparse.numblocks');
  if (count === undefined || !/^[0-9]{1,16}$/.test(count))
    throw badSparse(h.path, `has no count of regions (GNU.sparse.numblocks "${showPath(count ?? '')}")`);
  if (Number(count) > MAX_SPARSE_REGIONS) throw tooManyRegions(h.path, Number(count));
  const map = text('GNU.sparse.map');
  const nums = pax.sparse00.length > 0 ? pax.sparse00 : map ? map.split(',') : [];
  if (nums.length !== 2 * Number(count))
    throw badSparse(h.path, `says it has ${count} regions but lists ${nums.length / 2}`);
  const regions: SparseRegions = { offsets: [], lengths: [] };
  nums.forEach((v, i) => {
    const n = /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n)) throw badSparse(h.path, `has "${showPath(v.slice(0, 40))}" where a number belongs`);
    (i % 2 === 0 ? regions.offsets : regions.lengths).push(n);
  });
  return { regions, size };
}

/**
 * A sparse map is what GNU tar, bsdtar and Go's archive/tar accept: regions in order, none
 * overlapping another or reaching past the file's real size, holding exactly the data stored.
 */
function checkSparse(path: string, regions: SparseRegions, size: number, stored: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw badSparse(path, `gives the file a size of ${size} bytes`);
  const { offsets, lengths } = regions;
  let end = 0;
  let data = 0;
  for (let i = 0; i < offsets.length; i++) {
    const at = offsets[i]!;
    const len = lengths[i]!;
    if (at < 0 || len < 0) throw badSparse(path, `has region ${i + 1} at offset ${at} of ${len} bytes`);
    if (at < end)
      throw badSparse(
        path,
        `has region ${i + 1} at offset ${at}, before the end of region ${i} (${end}): regions must be in order and must not overlap`,
      );
    end = at + len;
    if (end > size)
      throw badSparse(path, `has region ${i + 1} ending at byte ${end}, past the file's size of ${size} bytes`);
    data += len;
  }
  if (data !== stored)
    throw badSparse(path, `has regions holding ${data} bytes of data, but the entry stores ${stored}`);
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
        if ((key.startsWith('SCHILY.xattr.') || key.startsWith('LIBARCHIVE.xattr.')) && h.xattrs === NO_XATTRS)
          h.xattrs = new Map();
        if (key.startsWith('SCHILY.xattr.')) {
          h.xattrs.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value));
        } else if (key.startsWith('LIBARCHIVE.xattr.')) {
          h.xattrs.set(
            percentDecode(key.slice('LIBARCHIVE.xattr.'.length)),
            Buffer.from(value.toString('latin1'), 'base64'),
          );
        }
    }
  }
}

function paxInt(v: Buffer, key: string): number {
  const s = v.toString('latin1');
  if (!/^[0-9]{1,16}$/.test(s) || !Number.isSafeInteger(Number(s)))
    throw new TarFormatError(`malformed PAX ${key} "${s}"`);
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
  if (n < 0)
    throw new TarFormatError(
      `the tar header of "${showPath(cstring(header.subarray(0, 100)))}" has a negative ${what}: ${what} ${n}`,
    );
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
