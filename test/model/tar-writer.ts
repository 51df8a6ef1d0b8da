// A small tar writer for generated layers: binary names, and each entry as plain ustar, PAX or GNU (long names, base-256 numbers) as asked.
import type { LayerEntry, Time } from './oci-layers.js';

export type Encoding = 'ustar' | 'pax' | 'gnu';

const BLOCK = 512;
const TYPEFLAG: Record<LayerEntry['type'], string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};
const OCTAL_MAX = (digits: number): number => 8 ** digits - 1;

function pad(b: Buffer): Buffer {
  const r = b.length % BLOCK;
  return r === 0 ? b : Buffer.concat([b, Buffer.alloc(BLOCK - r)]);
}

function octal(b: Buffer, off: number, len: number, v: number): void {
  b.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
}

/** GNU base-256: big-endian two's complement with the top bit of the first byte set. */
function base256(b: Buffer, off: number, len: number, v: number): void {
  let x = BigInt(v);
  if (x < 0n) x += 1n << BigInt(8 * len);
  for (let i = len - 1; i >= 0; i--) {
    b[off + i] = Number(x & 0xffn);
    x >>= 8n;
  }
  b[off] = b[off]! | 0x80;
}

function numberField(b: Buffer, off: number, len: number, v: number, gnu: boolean): void {
  if (v >= 0 && v <= OCTAL_MAX(len - 1)) octal(b, off, len, v);
  else if (gnu) base256(b, off, len, v);
  else octal(b, off, len, 0); // the PAX record carries the real value
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')]);
  let n = body.length + 1;
  while (String(n).length + body.length !== n) n = String(n).length + body.length;
  return Buffer.concat([Buffer.from(String(n), 'latin1'), body]);
}

function paxTime(t: Time): string {
  if (t.nsec === 0) return String(t.sec);
  // A negative time with a fraction is written as the sign, then the distance from zero.
  if (t.sec < 0) {
    const whole = -(t.sec + 1);
    return `-${whole}.${String(1e9 - t.nsec).padStart(9, '0')}`;
  }
  return `${t.sec}.${String(t.nsec).padStart(9, '0')}`;
}

interface Header {
  name: string;
  linkname: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  major: number;
  minor: number;
  gnu: boolean;
  prefix?: string;
}

function header(h: Header): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(h.name, 0, 100, 'latin1');
  numberField(b, 100, 8, h.mode, h.gnu);
  numberField(b, 108, 8, h.uid, h.gnu);
  numberField(b, 116, 8, h.gid, h.gnu);
  numberField(b, 124, 12, h.size, h.gnu);
  numberField(b, 136, 12, h.mtime, h.gnu);
  b.write(h.typeflag, 156, 'latin1');
  b.write(h.linkname, 157, 100, 'latin1');
  b.write(h.gnu ? 'ustar  \0' : 'ustar\x0000', 257, 'latin1');
  numberField(b, 329, 8, h.major, h.gnu);
  numberField(b, 337, 8, h.minor, h.gnu);
  if (h.prefix) b.write(h.prefix, 345, 155, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** ustar's prefix/name split of a path, if there is one. */
function ustarSplit(path: string): { prefix: string; name: string } | undefined {
  if (path.length <= 100) return { prefix: '', name: path };
  for (let i = Math.min(155, path.length - 1); i > 0; i--) {
    if (path[i] === '/' && path.length - i - 1 <= 100 && path.length - i - 1 > 0)
      return { prefix: path.slice(0, i), name: path.slice(i + 1) };
  }
  return undefined;
}

/**
 * One entry's blocks. `wanted` is tried first; an entry it cannot carry falls back to PAX (ustar
 * cannot hold long names, big numbers or xattrs; GNU cannot hold nanoseconds or xattrs). `dirSlash`
 * writes a directory's name with a trailing slash, as most writers do.
 */
export function entryBlocks(e: LayerEntry, wanted: Encoding, dirSlash: boolean): Buffer {
  const path = e.type === 'dir' && dirSlash && !e.path.endsWith('/') ? `${e.path}/` : e.path;
  const link = e.type === 'symlink' || e.type === 'link' ? e.target : '';
  const content = e.type === 'file' ? e.content : Buffer.alloc(0);
  const major = e.type === 'char' || e.type === 'block' ? e.major : 0;
  const minor = e.type === 'char' || e.type === 'block' ? e.minor : 0;
  const m = e.meta;
  const bigId = (v: number): boolean => v > OCTAL_MAX(7);
  const timeFits = m.mtime.nsec === 0 && m.mtime.sec >= 0 && m.mtime.sec <= OCTAL_MAX(11);
  let enc = wanted;
  if (m.xattrs.size > 0) enc = 'pax';
  if (enc === 'gnu' && m.mtime.nsec !== 0) enc = 'pax';
  // Issue 16 item 1 (fixed elsewhere): a non-directory whose 100-byte name field ends in '/' is misread; this writer
  // is about flattening, so it never writes that field (the tar reader's own tests cover it).
  if (enc === 'gnu' && e.type !== 'dir' && path.length > 100 && path[99] === '/') enc = 'pax';
  const split = ustarSplit(path);
  if (enc === 'ustar' && (!split || link.length > 100 || bigId(m.uid) || bigId(m.gid) || !timeFits)) enc = 'pax';
  const base = {
    linkname: link.slice(0, 100),
    typeflag: TYPEFLAG[e.type],
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
    size: content.length,
    mtime: m.mtime.sec,
    major,
    minor,
  };
  const out: Buffer[] = [];
  if (enc === 'ustar') {
    out.push(header({ ...base, name: split!.name, prefix: split!.prefix, gnu: false }));
  } else if (enc === 'gnu') {
    const longName = path.length > 100;
    if (longName) {
      const data = Buffer.from(`${path}\0`, 'latin1');
      out.push(
        header({
          ...base,
          name: '././@LongLink',
          linkname: '',
          typeflag: 'L',
          mode: 0,
          uid: 0,
          gid: 0,
          size: data.length,
          mtime: 0,
          major: 0,
          minor: 0,
          gnu: true,
        }),
        pad(data),
      );
    }
    if (link.length > 100) {
      const data = Buffer.from(`${link}\0`, 'latin1');
      out.push(
        header({
          ...base,
          name: '././@LongLink',
          linkname: '',
          typeflag: 'K',
          mode: 0,
          uid: 0,
          gid: 0,
          size: data.length,
          mtime: 0,
          major: 0,
          minor: 0,
          gnu: true,
        }),
        pad(data),
      );
    }
    out.push(header({ ...base, name: path.slice(0, 100), gnu: true }));
  } else {
    const recs: Buffer[] = [];
    if (path.length > 100) recs.push(paxRecord('path', Buffer.from(path, 'latin1')));
    if (link.length > 100) recs.push(paxRecord('linkpath', Buffer.from(link, 'latin1')));
    if (!timeFits) recs.push(paxRecord('mtime', Buffer.from(paxTime(m.mtime), 'latin1')));
    if (bigId(m.uid)) recs.push(paxRecord('uid', Buffer.from(String(m.uid))));
    if (bigId(m.gid)) recs.push(paxRecord('gid', Buffer.from(String(m.gid))));
    for (const [k, v] of m.xattrs) recs.push(paxRecord(`SCHILY.xattr.${k}`, v));
    if (recs.length > 0) {
      const data = Buffer.concat(recs);
      out.push(
        header({
          ...base,
          name: 'PaxHeaders/entry',
          linkname: '',
          typeflag: 'x',
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: data.length,
          mtime: 0,
          major: 0,
          minor: 0,
          gnu: false,
        }),
        pad(data),
      );
    }
    // As Go's writer does, the name field holds a short stand-in when the PAX path carries the name.
    const name = path.length > 100 ? standIn(path, e.type === 'dir') : path;
    out.push(header({ ...base, name, mtime: Math.max(0, Math.min(m.mtime.sec, OCTAL_MAX(11))), gnu: false }));
  }
  if (content.length > 0) out.push(pad(content));
  return Buffer.concat(out);
}

/** The last component (or the whole path) cut to fit 100 bytes, never ending in '/' unless it is a directory. */
function standIn(path: string, dir: boolean): string {
  const parts = path.split('/').filter((c) => c !== '');
  let s = (parts[parts.length - 1] ?? '.').slice(0, 99);
  if (dir) s += '/';
  return s;
}

/** A whole layer tar, each entry encoded as pick() says. */
export function layerTar(
  entries: LayerEntry[],
  pick: (e: LayerEntry, i: number) => { encoding: Encoding; dirSlash: boolean },
): Buffer {
  const parts = entries.map((e, i) => {
    const p = pick(e, i);
    return entryBlocks(e, p.encoding, p.dirSlash);
  });
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}
