// Encodes tar headers (ustar, with PAX extended headers when a field does not fit) from raw bytes, so binary xattr values and non-UTF-8 names survive.
//
// tar-stream writes PAX values as UTF-8 strings, which would mangle a security.capability value;
// every name and value here is a Buffer (or a latin1 "binary string", one char per byte).

export type TarWriteType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

export interface TarWriteEntry {
  /** Path bytes as a latin1 binary string, relative, without a leading "./" ("" is the root); no trailing slash. */
  path: string;
  type: TarWriteType;
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  /** Content bytes that follow (files only). */
  size: number;
  /** Symlink target or hard link target path (binary string). */
  linkpath?: string;
  devmajor?: number;
  devminor?: number;
  /** xattr name (binary string) → raw value. */
  xattrs?: ReadonlyArray<readonly [string, Buffer]>;
}

const BLOCK = 512;
const TYPEFLAG: Record<TarWriteType, number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  dir: 0x35,
  fifo: 0x36,
};

/** One PAX record: "LEN key=value\n", LEN counting itself. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

/** Whether n fits an octal field of `width` bytes (width-1 digits and a NUL). */
function fitsOctal(n: number, width: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n < 8 ** (width - 1);
}

function writeOctal(b: Buffer, off: number, width: number, n: number): void {
  b.write(`${n.toString(8).padStart(width - 1, '0')}\0`, off, width, 'latin1');
}

/** Base-256 (GNU) for numbers no octal field holds; used only where PAX has no key (device numbers). */
function writeNumber(b: Buffer, off: number, width: number, n: number): void {
  if (fitsOctal(n, width)) return writeOctal(b, off, width, n);
  let x = BigInt(n);
  for (let i = width - 1; i > 0; i--) {
    b[off + i] = Number(x & 0xffn);
    x >>= 8n;
  }
  b[off] = 0x80;
}

/** Splits a path into ustar's prefix (155) and name (100) at a slash, or undefined when it cannot. */
function splitUstar(name: Buffer): { prefix: Buffer; name: Buffer } | undefined {
  if (name.length <= 100) return { prefix: Buffer.alloc(0), name };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== 0x2f) continue;
    if (i > 155) continue;
    if (name.length - i - 1 > 100) break;
    if (name.length - i - 1 === 0) continue;
    return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
  }
  return undefined;
}

function header(fields: {
  name: Buffer;
  prefix: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: Buffer;
  devmajor: number;
  devminor: number;
}): Buffer {
  const b = Buffer.alloc(BLOCK);
  fields.name.copy(b, 0, 0, 100);
  writeOctal(b, 100, 8, fields.mode);
  writeOctal(b, 108, 8, fitsOctal(fields.uid, 8) ? fields.uid : 0);
  writeOctal(b, 116, 8, fitsOctal(fields.gid, 8) ? fields.gid : 0);
  writeOctal(b, 124, 12, fitsOctal(fields.size, 12) ? fields.size : 0);
  writeOctal(b, 136, 12, fitsOctal(fields.mtime, 12) ? fields.mtime : 0);
  b[156] = fields.typeflag;
  fields.linkname.copy(b, 157, 0, 100);
  b.write('ustar\x0000', 257, 8, 'latin1');
  writeNumber(b, 329, 8, fields.devmajor);
  writeNumber(b, 337, 8, fields.devminor);
  fields.prefix.copy(b, 345, 0, 155);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}

/** Zero bytes that pad content of `size` bytes to a whole block. */
export function padding(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/**
 * The header block(s) of one entry: a PAX 'x' header first when the path or link target is too long for
 * ustar, a number does not fit its octal field, or the entry has xattrs (SCHILY.xattr.NAME, as docker writes).
 */
export function encodeHeader(e: TarWriteEntry): Buffer {
  const rawPath = Buffer.from(e.type === 'dir' ? (e.path === '' ? './' : `${e.path}/`) : e.path, 'latin1');
  const link = Buffer.from(e.linkpath ?? '', 'latin1');
  const size = e.type === 'file' ? e.size : 0;
  const records: Buffer[] = [];
  const split = splitUstar(rawPath);
  if (!split) records.push(paxRecord('path', rawPath));
  if (link.length > 100) records.push(paxRecord('linkpath', link));
  if (!fitsOctal(e.uid, 8)) records.push(paxRecord('uid', Buffer.from(String(e.uid))));
  if (!fitsOctal(e.gid, 8)) records.push(paxRecord('gid', Buffer.from(String(e.gid))));
  if (!fitsOctal(size, 12)) records.push(paxRecord('size', Buffer.from(String(size))));
  if (!fitsOctal(e.mtime, 12)) records.push(paxRecord('mtime', Buffer.from(String(e.mtime))));
  for (const [name, value] of e.xattrs ?? []) records.push(paxRecord(`SCHILY.xattr.${name}`, value));
  const main = header({
    name: split ? split.name : rawPath.subarray(0, 100),
    prefix: split ? split.prefix : Buffer.alloc(0),
    mode: e.mode & 0o7777,
    uid: e.uid,
    gid: e.gid,
    size,
    mtime: e.mtime,
    typeflag: TYPEFLAG[e.type],
    linkname: link.subarray(0, 100),
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
  });
  if (records.length === 0) return main;
  const pax = Buffer.concat(records);
  const base = rawPath.subarray(rawPath.lastIndexOf(0x2f, rawPath.length - 2) + 1).subarray(0, 80);
  const paxHeader = header({
    name: Buffer.concat([Buffer.from('PaxHeaders/', 'latin1'), base]).subarray(0, 100),
    prefix: Buffer.alloc(0),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: pax.length,
    mtime: fitsOctal(e.mtime, 12) ? e.mtime : 0,
    typeflag: 0x78,
    linkname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), main]);
}
