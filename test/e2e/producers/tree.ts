// The producer matrix's logical tree: two layers as data (names, owners, modes, times, xattrs, ACLs, devices, holes, links, whiteouts), the JSON the fixture script materialises, and the fake kernel --raw needs.
import { gzipSync } from 'node:zlib';
import type { LayerEntry, Meta, Time } from '../../model/oci-layers.js';

/** A UTF-8 string as the binary string (one char per byte) that tar and the model use. */
export const bin = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

const T0: Time = { sec: 1_700_000_000, nsec: 0 };
/** 2400-01-01: ext4 holds it (to 2446), past the 2310 that e2fsck's heuristic is about. */
const AFTER_2310: Time = { sec: 13_569_465_600, nsec: 0 };
const T1: Time = { sec: 1_710_000_000, nsec: 0 };

function meta(
  mode: number,
  o: { uid?: number; gid?: number; mtime?: Time; xattrs?: Record<string, Buffer> } = {},
): Meta {
  return {
    mode,
    uid: o.uid ?? 0,
    gid: o.gid ?? 0,
    mtime: o.mtime ?? T0,
    xattrs: new Map(Object.entries(o.xattrs ?? {})),
  };
}

const dir = (path: string, mode = 0o755, o: Parameters<typeof meta>[1] = {}): LayerEntry => ({
  type: 'dir',
  path,
  meta: meta(mode, o),
});
const file = (
  path: string,
  content: Buffer | string,
  mode = 0o644,
  o: Parameters<typeof meta>[1] = {},
): LayerEntry => ({
  type: 'file',
  path,
  meta: meta(mode, o),
  content: Buffer.isBuffer(content) ? content : Buffer.from(content, 'latin1'),
});
const symlink = (path: string, target: string, o: Parameters<typeof meta>[1] = {}): LayerEntry => ({
  type: 'symlink',
  path,
  target,
  meta: meta(0o777, o),
});
const hardlink = (path: string, target: string): LayerEntry => ({ type: 'link', path, target, meta: meta(0o644) });
const whiteout = (parent: string, name: string): LayerEntry => file(`${parent}/.wh.${name}`, '');

/** Deterministic bytes that are never a whole block of zeros. */
function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    b[i] = (s & 0xff) | 1;
  }
  return b;
}

/** A file of `size` bytes with data only in [offset, offset + length) runs: holes everywhere else. */
function sparse(size: number, runs: Array<[number, number]>): Buffer {
  const b = Buffer.alloc(size);
  runs.forEach(([off, len], i) => noise(len, 1000 + i).copy(b, off));
  return b;
}

/** POSIX ACL in the xattr format the kernel takes (version 2, entries sorted by tag then id). */
function acl(entries: Array<[tag: 'u' | 'U' | 'g' | 'G' | 'm' | 'o', perm: number, id?: number]>): Buffer {
  const TAG = { u: 1, U: 2, g: 4, G: 8, m: 0x10, o: 0x20 } as const;
  const sorted = entries
    .map(([t, p, id]) => ({ tag: TAG[t], perm: p, id: id ?? 0xffffffff }))
    .sort((a, b) => a.tag - b.tag || a.id - b.id);
  const out = Buffer.alloc(4 + 8 * sorted.length);
  out.writeUInt32LE(2, 0);
  sorted.forEach((e, i) => {
    out.writeUInt16LE(e.tag, 4 + 8 * i);
    out.writeUInt16LE(e.perm, 6 + 8 * i);
    out.writeUInt32LE(e.id, 8 + 8 * i);
  });
  return out;
}

/** vfs_cap_data revision 2: CAP_NET_RAW permitted and effective (what ping carries). */
const CAP_NET_RAW = Buffer.from('0100000200200000000000000000000000000000', 'hex');

/**
 * The smallest bzImage img2vm's --raw rootfs output accepts: a setup header whose payload is a
 * gzip'ed x86-64 ELF header. It stands in for the kernel an --init image disk needs.
 */
export function fakeKernel(): Buffer {
  const elf = Buffer.alloc(64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2;
  elf[5] = 1;
  elf[6] = 1;
  elf.writeUInt16LE(2, 16);
  elf.writeUInt16LE(62, 18);
  elf.writeBigUInt64LE(64n, 32);
  elf.writeUInt16LE(56, 54);
  const z = gzipSync(elf);
  const pm = 2 * 512;
  const img = Buffer.alloc(pm + 16 + z.length + 4);
  img[0x1f1] = 1;
  img.write('HdrS', 0x202, 'latin1');
  img.writeUInt16LE(0x20f, 0x206);
  img.writeUInt32LE(16, 0x248);
  img.writeUInt32LE(z.length + 4, 0x24c);
  z.copy(img, pm + 16);
  img.writeUInt32LE(elf.length, pm + 16 + z.length);
  return img;
}

/**
 * Where a '/' falls (1-based byte of the path, without a leading "./") for the ladder of long paths:
 * around 100, where a writer that cuts the ustar name field of a long path (GNU tar, Python's
 * tarfile) can leave a '/' at its end on a regular file (issue 16 item 1: such a file became a
 * directory, or the conversion failed), and around 155, the ustar prefix field's end.
 */
export const LADDER = [
  ...Array.from({ length: 11 }, (_, i) => 95 + i),
  ...Array.from({ length: 11 }, (_, i) => 150 + i),
];

function ladder(): LayerEntry[] {
  const out: LayerEntry[] = [dir('ladder')];
  for (const k of LADDER) {
    const d = `ladder/${'p'.repeat(k - 8)}`; // k - 1 bytes: its '/' is byte k
    out.push(
      dir(d),
      file(`${d}/${`f${k}`.padEnd(12, 'x')}`, `short ${k}\n`),
      file(`${d}/${'L'.repeat(266 - k)}`, `long ${k}\n`),
    );
  }
  return out;
}

function deep(): LayerEntry[] {
  const out: LayerEntry[] = [dir('deep')];
  let p = 'deep';
  for (let i = 0; i < 15; i++) {
    p += `/${String.fromCharCode(0x41 + i).repeat(200)}`;
    out.push(dir(p));
  }
  out.push(file(`${p}/end`, 'the end of a 3 KiB path\n'));
  out.push(dir(`deep/${'Z'.repeat(255)}`), file(`deep/${'Z'.repeat(255)}/${'Y'.repeat(255)}`, 'two 255-byte names\n'));
  return out;
}

const LONG_NAME = 'w'.repeat(255);
const NEAR_LONG_NAME = 'v'.repeat(251);
const NON_UTF8 = '\xff\xfe latin1 \xe9';

export function layers(): LayerEntry[][] {
  const l1: LayerEntry[] = [
    dir('boot'),
    file('boot/vmlinuz-0', fakeKernel()),
    dir('plain'),
    file('plain/hello.txt', 'hello\n', 0o644, { uid: 1000, gid: 1000 }),
    file('plain/exec', '#!/bin/sh\necho hi\n', 0o755),
    file('plain/setuid', 'suid\n', 0o4755),
    dir('plain/setgid-dir', 0o2775, { gid: 50 }),
    dir('plain/sticky', 0o1777),
    file('plain/empty', ''),
    file('plain/mode000', 'locked\n', 0o000),
    file('plain/bigids', 'ids beyond 7 octal digits\n', 0o640, { uid: 3_000_000, gid: 4_000_000_000 }),
    file('plain/nobody', 'n\n', 0o600, { uid: 65534, gid: 65534 }),
    file('plain/big', noise(300 * 1024 + 123, 7)),
    dir('names'),
    file(`names/${'n'.repeat(255)}`, '255 bytes of name\n'),
    file(`names/${bin('é'.repeat(127))}x`, '255 bytes of UTF-8 name\n'),
    file(`names/${NON_UTF8}`, 'not UTF-8\n'),
    file(`names/spaces and 'quotes' "double"`, 'q\n'),
    file('names/back\\slash', 'b\n'),
    file('names/50%=equals', 'p\n'),
    file('names/.hidden', 'h\n'),
    dir(`names/${'\xe9'.repeat(120)}`),
    file(`names/${'\xe9'.repeat(120)}/inner`, 'below a long non-UTF-8 name\n'),
    ...ladder(),
    ...deep(),
    dir('links'),
    file('links/target', 'linked content\n', 0o640, { uid: 7, gid: 8 }),
    hardlink('links/hard1', 'links/target'),
    dir('links/sub'),
    hardlink('links/sub/hard2', 'links/target'),
    dir(`links/${'T'.repeat(150)}`),
    file(`links/${'T'.repeat(150)}/target-long`, 'long-named link target\n'),
    hardlink(`links/${'H'.repeat(200)}`, `links/${'T'.repeat(150)}/target-long`),
    symlink('links/rel', 'target'),
    symlink('links/abs', '/links/target'),
    symlink('links/dangling', '../nowhere'),
    symlink('links/long', 'x/'.repeat(500)),
    symlink('links/nonutf8', '\xff\xfe'),
    symlink('links/owned', 'target', { uid: 1000, gid: 1000 }),
    dir('devs'),
    { type: 'char', path: 'devs/null', meta: meta(0o666), major: 1, minor: 3 },
    { type: 'char', path: 'devs/big', meta: meta(0o600), major: 4095, minor: 1_048_575 },
    { type: 'block', path: 'devs/sda1', meta: meta(0o660, { gid: 6 }), major: 8, minor: 1 },
    { type: 'fifo', path: 'devs/fifo', meta: meta(0o620) },
    dir('xattrs'),
    file('xattrs/file', 'x\n', 0o644, {
      xattrs: {
        'user.greeting': Buffer.from('hello'),
        'user.binary': Buffer.from([0, 0xff, 1, 0x0a]),
        'user.big': Buffer.alloc(3000, 0x42),
        'user.empty': Buffer.alloc(0),
      },
    }),
    dir('xattrs/dir', 0o755, { xattrs: { 'user.dirattr': Buffer.from('d') } }),
    file('xattrs/cap', 'ELF\n', 0o755, { xattrs: { 'security.capability': CAP_NET_RAW } }),
    dir('acls'),
    file('acls/file', 'acl\n', 0o640, {
      xattrs: {
        'system.posix_acl_access': acl([
          ['u', 6],
          ['U', 4, 1000],
          ['g', 4],
          ['m', 4],
          ['o', 0],
        ]),
      },
    }),
    dir('acls/dir', 0o770, {
      xattrs: {
        'system.posix_acl_access': acl([
          ['u', 7],
          ['g', 5],
          ['G', 7, 100],
          ['m', 7],
          ['o', 0],
        ]),
        'system.posix_acl_default': acl([
          ['u', 7],
          ['U', 7, 1000],
          ['g', 5],
          ['m', 7],
          ['o', 0],
        ]),
      },
    }),
    dir('times', 0o755, { mtime: { sec: -315_619_200, nsec: 0 } }),
    file('times/pre1970', 'a\n', 0o644, { mtime: { sec: -86_400, nsec: 0 } }),
    file('times/pre1970-nsec', 'b\n', 0o644, { mtime: { sec: -315_619_201, nsec: 500_000_000 } }),
    file('times/min', 'c\n', 0o644, { mtime: { sec: -(2 ** 31), nsec: 0 } }),
    file('times/post2038', 'd\n', 0o644, { mtime: { sec: 2 ** 31 + 1, nsec: 0 } }),
    file('times/post2038-nsec', 'e\n', 0o644, { mtime: { sec: 4_102_444_800, nsec: 123_456_789 } }),
    file('times/nsec', 'f\n', 0o644, { mtime: { sec: 1_700_000_000, nsec: 123_456_789 } }),
    file('times/one-ns', 'g\n', 0o644, { mtime: { sec: 1_700_000_000, nsec: 1 } }),
    file('times/after2310', 'h\n', 0o644, { mtime: AFTER_2310 }),
    symlink('times/link-nsec', 'nsec', { mtime: { sec: 1_600_000_000, nsec: 250_000_000 } }),
    dir('times/sub', 0o755, { mtime: { sec: 1_700_000_000, nsec: 987_654_321 } }),
    dir('holes'),
    file(
      'holes/middle',
      sparse(1 << 20, [
        [0, 4096],
        [128 * 4096, 4096],
        [(1 << 20) - 100, 100],
      ]),
    ),
    file('holes/tail', sparse(256 * 1024, [[0, 100]])),
    file('holes/all-hole', sparse(128 * 1024, [])),
    file('holes/lead', sparse(300 * 1024, [[50 * 4096, 8192]])),
    dir('gone'),
    file('gone/file', 'to be deleted\n'),
    dir('gone/dir'),
    file('gone/dir/child', 'deleted with its directory\n'),
    file(`gone/${LONG_NAME}`, 'a 255-byte name, deleted\n'),
    file(`gone/${NEAR_LONG_NAME}`, 'a 251-byte name, deleted\n'),
    file('gone/\xff-gone', 'a name that is not UTF-8, deleted\n'),
    file('gone/kept', 'stays\n'),
    dir('opq'),
    file('opq/a', 'hidden by the opaque whiteout\n'),
    file('opq/b', 'hidden too\n'),
    dir('opq/sub'),
    file('opq/sub/c', 'and this\n'),
    dir('repl'),
    dir('repl/dir-to-file'),
    file('repl/dir-to-file/child', 'goes with its directory\n'),
    file('repl/file-to-dir', 'becomes a directory\n'),
  ];
  // Layer 2 names every directory it writes into, with its metadata, as a layer made from a directory tree does.
  const l2: LayerEntry[] = [
    dir('plain', 0o755, { mtime: T1 }),
    file('plain/hello.txt', 'hello again\n', 0o644, { uid: 1000, gid: 1000, mtime: T1 }),
    dir('gone'),
    whiteout('gone', 'file'),
    whiteout('gone', 'dir'),
    whiteout('gone', LONG_NAME),
    whiteout('gone', NEAR_LONG_NAME),
    whiteout('gone', '\xff-gone'),
    dir('links'),
    whiteout('links', 'hard1'),
    whiteout('links', 'dangling'),
    dir('opq', 0o750, { mtime: T1 }),
    file('opq/.wh..wh..opq', ''),
    file('opq/new', 'the only entry left\n'),
    dir('repl'),
    file('repl/dir-to-file', 'was a directory\n'),
    dir('repl/file-to-dir', 0o755, { mtime: T1 }),
    file('repl/file-to-dir/inner', 'was a file\n'),
  ];
  return [l1, l2];
}

/** The layers as the materialising script reads them: binary strings as hex, file content as its non-zero 4 KiB blocks. */
export function specJson(ls: LayerEntry[][]): string {
  const hex = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
  return JSON.stringify({
    layers: ls.map((l) =>
      l.map((e) => {
        const o: Record<string, unknown> = {
          type: e.type,
          path: hex(e.path),
          mode: e.meta.mode,
          uid: e.meta.uid,
          gid: e.meta.gid,
          mtime: [e.meta.mtime.sec, e.meta.mtime.nsec],
          xattrs: [...e.meta.xattrs].map(([k, v]) => [k, v.toString('hex')]),
        };
        if (e.type === 'file') {
          o.size = e.content.length;
          const blocks: Array<[number, string]> = [];
          for (let off = 0; off < e.content.length; off += 4096) {
            const b = e.content.subarray(off, off + 4096);
            if (b.some((x) => x !== 0)) blocks.push([off, b.toString('hex')]);
          }
          o.blocks = blocks;
        }
        if (e.type === 'symlink' || e.type === 'link') o.target = hex(e.target);
        if (e.type === 'char' || e.type === 'block') o.dev = [e.major, e.minor];
        return o;
      }),
    ),
  });
}
