// A canonical listing of a file tree (one row per path) from the layer model, from img2vm's in-memory tree and from an ext4 image read back with debugfs, and their differences.
import { createHash } from 'node:crypto';
import { readTree } from '../disk/ext4/readback.js';
import type { ModelResult, Time } from './oci-layers.js';

export interface Row {
  kind: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Time;
  size?: number;
  sha256?: string;
  target?: string;
  device?: string;
  /** "name=hex" sorted, joined by ' '. */
  xattrs: string;
  /** For a path with hard links: the first (sorted) path of its group; '' otherwise. */
  group: string;
  /** Which 4 KiB blocks hold data (e.g. "0,3-5"), for the files a caller asks about. */
  blocks?: string;
}

/** Binary path ('/'-joined, leading '/'; '/' is the root) → row. */
export type Listing = Map<string, Row>;

const ACL_USER = 2;
const ACL_GROUP = 8;

/** POSIX ACL xattrs with the id of entries that have none (owner, group, mask, other) as 0: debugfs shows them so. */
export function canonicalXattr(name: string, v: Buffer): Buffer {
  if (!name.startsWith('system.posix_acl_')) return v;
  const b = Buffer.from(v);
  for (let o = 4; o + 8 <= b.length; o += 8)
    if (b.readUInt16LE(o) !== ACL_USER && b.readUInt16LE(o) !== ACL_GROUP) b.writeUInt32LE(0, o + 4);
  return b;
}

export function xattrText(x: Iterable<[string, Buffer]>): string {
  return [...x]
    .map(([k, v]) => `${k}=${canonicalXattr(k, v).toString('hex')}`)
    .sort()
    .join(' ');
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Sets each row's hard-link group from an identity per path. */
function setGroups(rows: Listing, identity: Map<string, unknown>): void {
  const byId = new Map<unknown, string[]>();
  for (const [p, id] of identity) byId.set(id, [...(byId.get(id) ?? []), p]);
  for (const paths of byId.values()) {
    if (paths.length < 2) continue;
    const first = [...paths].sort()[0]!;
    for (const p of paths) rows.get(p)!.group = first;
  }
}

export function listingFromModel(m: ModelResult): Listing {
  const out: Listing = new Map();
  const identity = new Map<string, unknown>();
  for (const [p, n] of m.paths) {
    const path = `/${p}`;
    const row: Row = {
      kind: n.kind,
      mode: n.meta.mode,
      uid: n.meta.uid,
      gid: n.meta.gid,
      mtime: { ...n.meta.mtime },
      xattrs: xattrText(n.meta.xattrs),
      group: '',
    };
    if (n.kind === 'file') {
      row.size = n.content!.length;
      row.sha256 = sha256(n.content!);
    }
    if (n.kind === 'symlink') row.target = n.target!;
    if (n.kind === 'char' || n.kind === 'block') row.device = `${n.major}:${n.minor}`;
    out.set(path === '/' ? '/' : path, row);
    if (n.kind !== 'dir') identity.set(path, n);
  }
  setGroups(out, identity);
  return out;
}

const EXT4_KIND: Record<string, string> = {
  regular: 'file',
  directory: 'dir',
  symlink: 'symlink',
  character: 'char',
  block: 'block',
  FIFO: 'fifo',
  socket: 'socket',
};

/** A time as ext4 stores it: the low 32 bits signed, then epoch bits and nanoseconds in the extra field. */
export function ext4Time([lo, extra]: [number, number]): Time {
  return { sec: lo + (extra & 3) * 2 ** 32, nsec: extra >>> 2 };
}

/**
 * An ext4 image (a file, or "FILE?offset=N") read back with debugfs. `ignore` leaves out paths img2vm
 * adds of its own (lost+found, /etc/fstab). `blocksOf` names files whose mapped 4 KiB blocks to list.
 */
export function listingFromExt4(
  image: string,
  scratch: string,
  opts: { ignore?: (p: string) => boolean; blocksOf?: (p: string) => boolean; extents?: (ino: number) => string } = {},
): Listing {
  const t = readTree(image, scratch);
  const out: Listing = new Map();
  const identity = new Map<string, unknown>();
  const entries = [{ path: '/', ino: 2 }, ...t.entries];
  for (const e of entries) {
    if (opts.ignore?.(e.path)) continue;
    const r = t.inodes.get(e.ino)!;
    const kind = EXT4_KIND[r.type] ?? r.type;
    const row: Row = {
      kind,
      mode: r.perm,
      uid: r.uid,
      gid: r.gid,
      mtime: ext4Time(r.times.mtime),
      xattrs: xattrText(r.xattrs),
      group: '',
    };
    if (kind === 'file') {
      row.size = r.size;
      row.sha256 = r.sha256!;
      if (opts.blocksOf?.(e.path) && opts.extents) row.blocks = opts.extents(e.ino);
    }
    if (kind === 'symlink') row.target = r.target!;
    if (r.device) row.device = `${r.device[0]}:${r.device[1]}`;
    out.set(e.path, row);
    if (kind !== 'dir') identity.set(e.path, e.ino);
  }
  setGroups(out, identity);
  return out;
}

/** A path for people: bytes outside printable ASCII as \xNN, long components shortened to their start and length. */
export function showPath(p: string): string {
  return p
    .split('/')
    .map((c) => {
      const s = c.length > 24 ? `${c.slice(0, 8)}…[${c.length}]` : c;
      let out = '';
      for (const ch of s) {
        const code = ch.charCodeAt(0);
        out +=
          ch === '…' ? ch : code < 0x20 || code > 0x7e || ch === '\\' ? `\\x${code.toString(16).padStart(2, '0')}` : ch;
      }
      return out;
    })
    .join('/');
}

function showValue(k: keyof Row, v: unknown): string {
  if (v === undefined) return '-';
  if (k === 'mode') return (v as number).toString(8);
  if (k === 'mtime') return `${(v as Time).sec}.${String((v as Time).nsec).padStart(9, '0')}`;
  if (k === 'group' || k === 'target') return (v as string) === '' ? "''" : showPath(v as string);
  // Long values (a 3000-byte xattr) shortened to their start and length; the comparison uses them whole.
  if (k === 'xattrs') return (v as string).replace(/=([0-9a-f]{32})[0-9a-f]{8,}/g, (_, h: string) => `=${h}…`) || "''";
  return String(v);
}

const FIELDS: (keyof Row)[] = [
  'kind',
  'mode',
  'uid',
  'gid',
  'mtime',
  'size',
  'sha256',
  'target',
  'device',
  'xattrs',
  'group',
  'blocks',
];

export interface Difference {
  path: string;
  /** A field name, or 'missing' / 'extra'. */
  what: string;
  text: string;
}

/** Every way `got` differs from `want`, one line each. `blocks` is compared only where `want` has it. */
export function diffListings(want: Listing, got: Listing): Difference[] {
  const out: Difference[] = [];
  for (const [p, w] of want) {
    const g = got.get(p);
    if (!g) {
      out.push({ path: p, what: 'missing', text: `${showPath(p)}: missing (want ${w.kind})` });
      continue;
    }
    for (const k of FIELDS) {
      if (k === 'blocks' && w.blocks === undefined) continue;
      const same = k === 'mtime' ? w.mtime.sec === g.mtime.sec && w.mtime.nsec === g.mtime.nsec : w[k] === g[k];
      if (same) continue;
      out.push({ path: p, what: k, text: `${showPath(p)}: ${k} want ${showValue(k, w[k])} got ${showValue(k, g[k])}` });
    }
  }
  for (const [p, g] of got)
    if (!want.has(p)) out.push({ path: p, what: 'extra', text: `${showPath(p)}: extra ${g.kind}` });
  return out;
}
