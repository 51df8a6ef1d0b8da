// A tar reader written from POSIX (ustar, pax) and GNU tar's manual, sharing no code with src/rootfs: turns the layers of a `docker save` archive into the layer model's entries.
//
// It reads a file in place (positional reads, nothing extracted), so an image of hundreds of MB costs no memory beyond
// what the caller keeps of each file's content. Only what image layers use is read: regular files, hard and symbolic
// links, devices, fifos and directories; pax extended headers (path, linkpath, size, uid, gid, mtime, SCHILY.xattr.*);
// GNU long names (L, K). Anything else (GNU sparse members, a damaged header) is an error: an oracle must not guess.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { LayerEntry, Meta, Time } from './oci-layers.js';

const BLOCK = 512;

/** What a file's content becomes in the model: the caller decides (its bytes, or something that stands for them). */
export type ContentOf = (fd: number, offset: number, size: number) => Buffer;

export interface Member {
  name: string;
  typeflag: string;
  linkname: string;
  meta: Meta;
  major: number;
  minor: number;
  size: number;
  /** Where the member's data starts in the file. */
  dataAt: number;
}

function readAt(fd: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, b, got, length - got, offset + got);
    if (n === 0)
      throw new Error(`tar: the file ends at ${offset + got}, inside a member (${length} bytes wanted at ${offset})`);
    got += n;
  }
  return b;
}

/** A NUL-terminated field as a binary string (one char per byte). */
function text(b: Buffer, off: number, len: number): string {
  const f = b.subarray(off, off + len);
  const end = f.indexOf(0);
  return f.subarray(0, end < 0 ? len : end).toString('latin1');
}

/** A numeric field: octal digits (space or NUL ended), or GNU's base-256 when the first byte's top bit is set. */
function num(b: Buffer, off: number, len: number): number {
  const f = b.subarray(off, off + len);
  if (f[0]! & 0x80) {
    let v = BigInt(f[0]! & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(f[i]!);
    // 0xff in the first byte: a negative number, two's complement over the field.
    if (f[0] === 0xff) v -= 1n << BigInt(8 * len - 1);
    return Number(v);
  }
  const s = f
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new Error(`tar: not an octal number: ${JSON.stringify(s)}`);
  return Number.parseInt(s, 8);
}

/** The header checksum: every byte summed, the checksum field counted as eight spaces (POSIX; unsigned bytes). */
function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === num(h, 148, 8);
}

/** pax records: "LENGTH KEY=VALUE\n", LENGTH counting the whole record in bytes; keys as binary strings, values as bytes. */
function paxRecords(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const len = Number(data.subarray(at, space).toString('latin1'));
    if (space < 0 || !Number.isInteger(len) || len <= 0 || at + len > data.length)
      throw new Error(`tar: bad pax record at ${at}`);
    const rec = data.subarray(space + 1, at + len - 1); // without the final newline
    const eq = rec.indexOf(0x3d);
    if (eq < 0 || data[at + len - 1] !== 0x0a) throw new Error(`tar: bad pax record at ${at}`);
    out.set(rec.subarray(0, eq).toString('latin1'), Buffer.from(rec.subarray(eq + 1)));
    at += len;
  }
  return out;
}

/** A pax time "SECONDS[.FRACTION]", negative ones as the sign, then the distance from zero. */
function paxTime(v: string): Time {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(v);
  if (!m) throw new Error(`tar: bad pax time ${JSON.stringify(v)}`);
  const whole = Number(m[2]);
  const frac = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (m[1] !== '-') return { sec: whole, nsec: frac };
  return frac === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1e9 - frac };
}

/** Where the member after one with `size` bytes of data at `dataAt` starts (data is padded to whole blocks). */
function next(dataAt: number, size: number, end: number): number {
  const at = dataAt + Math.ceil(size / BLOCK) * BLOCK;
  if (at > end) throw new Error(`tar: the member at ${dataAt - BLOCK} runs past the end of its archive`);
  return at;
}

/** The members of the tar that fills [start, start + length) of an open file, in order, pax and GNU headers applied. */
export function members(fd: number, start: number, length: number): Member[] {
  const out: Member[] = [];
  const end = start + length;
  let at = start;
  let global = new Map<string, Buffer>();
  let local = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  while (at + BLOCK <= end) {
    const h = readAt(fd, at, BLOCK);
    if (h.every((x) => x === 0)) break; // the end-of-archive blocks
    if (!checksumOk(h)) throw new Error(`tar: bad header checksum at ${at}`);
    const typeflag = String.fromCharCode(h[156]!);
    const headerSize = num(h, 124, 12);
    const dataAt = at + BLOCK;
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      at = next(dataAt, headerSize, end);
      const data = readAt(fd, dataAt, headerSize);
      if (typeflag === 'x') local = paxRecords(data);
      else if (typeflag === 'g') global = new Map([...global, ...paxRecords(data)]);
      else if (typeflag === 'L') longName = text(data, 0, headerSize);
      else longLink = text(data, 0, headerSize);
      continue;
    }
    // Only POSIX ustar ("ustar\0") has a prefix field; GNU's magic ("ustar  ") keeps times there.
    const posix = h.subarray(257, 263).toString('latin1') === 'ustar\0';
    const prefix = posix ? text(h, 345, 155) : '';
    const pax = new Map([...global, ...local]);
    const s = (k: string): string | undefined => pax.get(k)?.toString('latin1');
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    const size = s('size') !== undefined ? Number(s('size')) : headerSize;
    at = next(dataAt, size, end);
    out.push({
      name: s('path') ?? longName ?? (prefix ? `${prefix}/${text(h, 0, 100)}` : text(h, 0, 100)),
      typeflag,
      linkname: s('linkpath') ?? longLink ?? text(h, 157, 100),
      meta: {
        mode: num(h, 100, 8) & 0o7777,
        uid: s('uid') !== undefined ? Number(s('uid')) : num(h, 108, 8),
        gid: s('gid') !== undefined ? Number(s('gid')) : num(h, 116, 8),
        mtime: s('mtime') !== undefined ? paxTime(s('mtime')!) : { sec: num(h, 136, 12), nsec: 0 },
        xattrs,
      },
      major: num(h, 329, 8),
      minor: num(h, 337, 8),
      size,
      dataAt,
    });
    local = new Map();
    longName = longLink = undefined;
  }
  return out;
}

/** One layer's members as the model's entries (a layer is a tar: typeflag '7', contiguous, is a regular file). */
export function layerEntries(fd: number, start: number, length: number, contentOf: ContentOf): LayerEntry[] {
  return members(fd, start, length).map((m): LayerEntry => {
    const { name: path, meta } = m;
    switch (m.typeflag) {
      case '0':
      case '\0':
      case '7':
        return { type: 'file', path, meta, content: contentOf(fd, m.dataAt, m.size) };
      case '1':
        return { type: 'link', path, meta, target: m.linkname };
      case '2':
        return { type: 'symlink', path, meta, target: m.linkname };
      case '3':
        return { type: 'char', path, meta, major: m.major, minor: m.minor };
      case '4':
        return { type: 'block', path, meta, major: m.major, minor: m.minor };
      case '5':
        return { type: 'dir', path, meta };
      case '6':
        return { type: 'fifo', path, meta };
      default:
        throw new Error(
          `tar: member ${JSON.stringify(path)} has typeflag ${JSON.stringify(m.typeflag)}, which image layers do not use`,
        );
    }
  });
}

/**
 * The layers of a `docker save` archive, bottom first, read from manifest.json (the archive's first image). Layers must
 * be uncompressed tars, as `docker save` writes them.
 */
export function dockerSaveLayers(file: string, contentOf: ContentOf): LayerEntry[][] {
  const fd = openSync(file, 'r');
  try {
    const index = new Map(members(fd, 0, fstatSync(fd).size).map((m) => [m.name.replace(/^\.\//, ''), m]));
    const manifest = index.get('manifest.json');
    if (!manifest) throw new Error(`${file}: no manifest.json (not a docker save archive)`);
    const images = JSON.parse(readAt(fd, manifest.dataAt, manifest.size).toString('utf8')) as { Layers: string[] }[];
    return images[0]!.Layers.map((p) => {
      const m = index.get(p);
      if (!m) throw new Error(`${file}: manifest.json names ${p}, which the archive lacks`);
      const magic = readAt(fd, m.dataAt, Math.min(4, m.size));
      if (magic[0] === 0x1f && magic[1] === 0x8b)
        throw new Error(
          `${file}: layer ${p} is gzip-compressed; this reader takes the uncompressed tars docker save writes`,
        );
      return layerEntries(fd, m.dataAt, m.size, contentOf);
    });
  } finally {
    closeSync(fd);
  }
}
