// Every inode attribute the writer stores, read back with debugfs: owners, modes, nanosecond times, links, devices, symlinks, names.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeTime } from '../../../src/disk/ext4/inode.js';
import type { Node, NodeMeta, Timestamp } from '../../../src/rootfs/tree.js';
import { debugfs, dir, EPOCH, expectClean, file, meta, tmp, ts, writeImage } from './helpers.js';
import { readTree, type ReadTree } from './readback.js';

const t = tmp();
afterAll(() => {
  if (!process.env.KEEP) t.done();
});

const linked = Buffer.from('one inode, three names\n');
const contents = new Map<string, Buffer>();
const expected = new Map<string, Node>();
let tree: ReadTree;
let img: string;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

beforeAll(async () => {
  img = t.path('attrs.img');
  await writeImage(img, (w) => {
    const f = (name: string, data: string | Buffer, m: NodeMeta): Node => {
      const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
      contents.set(name, b);
      return file(w.putBuffer(b), b.length, m);
    };
    const hl = f('hard', linked, meta(0o640, { uid: 1000, gid: 100 }));
    const entries: Record<string, Node> = {
      suid: f('suid', '#!/bin/sh\n', meta(0o4755)),
      sgid: f('sgid', 'x', meta(0o2711, { gid: 42 })),
      sticky: dir({}, meta(0o1777)),
      allbits: f('allbits', 'y', meta(0o7777)),
      nobits: f('nobits', 'z', meta(0)),
      owners: f('owners', 'o', meta(0o600, { uid: 70000, gid: 4294967294 })),
      times: f(
        'times',
        't',
        meta(0o644, {
          mtime: ts(1_700_000_000, 123_456_789),
          atime: ts(-1_234_567_890, 42),
          ctime: ts(3_000_000_000, 999_999_999),
        }),
      ),
      epoch0: f('epoch0', '0', meta(0o644, { mtime: ts(0, 0), atime: ts(-1, 999_999_999), ctime: ts(2 ** 31 - 1, 1) })),
      far: f('far', 'f', meta(0o644, { mtime: ts(2 ** 32 + 5, 1), atime: ts(2 ** 33, 7) })),
      hard1: hl,
      sub: dir({ hard2: hl, deeper: dir({ hard3: hl }) }, meta(0o750, { uid: 3, gid: 4 })),
      null: { kind: 'char', meta: meta(0o666), major: 1, minor: 3 },
      sda: { kind: 'block', meta: meta(0o660, { gid: 6 }), major: 8, minor: 0 },
      zero: { kind: 'char', meta: meta(0o600), major: 0, minor: 0 },
      bigdev: { kind: 'char', meta: meta(0o600), major: 259, minor: 70_000 },
      maxdev: { kind: 'block', meta: meta(0o600), major: 4095, minor: 1_048_575 },
      minor256: { kind: 'char', meta: meta(0o600), major: 4, minor: 256 },
      fifo: { kind: 'fifo', meta: meta(0o644) },
      sock: { kind: 'socket', meta: meta(0o755) },
      fast: { kind: 'symlink', meta: meta(0o777), target: 'a' },
      fast59: { kind: 'symlink', meta: meta(0o777), target: 'x'.repeat(59) },
      slow60: { kind: 'symlink', meta: meta(0o777), target: 'y'.repeat(60) },
      slowmax: { kind: 'symlink', meta: meta(0o777, { uid: 9 }), target: `/${'z'.repeat(4094)}` },
      binlink: { kind: 'symlink', meta: meta(0o777), target: '\xff\x80/\x01..' },
      ['n'.repeat(255)]: f('long', 'long name', meta(0o644)),
      '\xff\xfe-not-utf8': f('bin', 'binary name', meta(0o644)),
      'sp ace': f('space', 'space', meta(0o644)),
      'new\nline': f('newline', 'newline', meta(0o644)),
      empty: f('empty', '', meta(0o644)),
      '\xe9t\xe9': dir({ '\x01\x7f': f('ctl', 'c', meta(0o400)) }),
    };
    for (const [k, v] of Object.entries(entries)) expected.set(`/${k}`, v);
    return dir(entries, meta(0o711, { uid: 5, gid: 6, mtime: ts(1_600_000_000, 1) }));
  });
  tree = readTree(img, t.dir);
});

function inodeAt(path: string): ReturnType<ReadTree['inodes']['get']> & object {
  const e = tree.entries.find((x) => x.path === path);
  if (!e) throw new Error(`${JSON.stringify(path)} is not in the image`);
  return tree.inodes.get(e.ino)!;
}

function times(m: NodeMeta): Record<string, [number, number]> {
  const enc = (x: Timestamp): [number, number] => encodeTime(x);
  return {
    mtime: enc(m.mtime),
    atime: enc(m.atime ?? m.mtime),
    ctime: enc(m.ctime ?? m.mtime),
    crtime: enc({ sec: EPOCH, nsec: 0 }),
  };
}

describe('inode attributes', () => {
  it('e2fsck finds nothing to fix', () => expectClean(img));

  it('keeps every name, including 255-byte, non-UTF-8, space, newline and control-byte names', () => {
    const names = tree.entries
      .filter((e) => e.path.lastIndexOf('/') === 0)
      .map((e) => e.path)
      .sort();
    expect(names).toEqual([...expected.keys(), '/lost+found'].sort());
    expect(tree.entries.map((e) => e.path)).toContain('/\xe9t\xe9/\x01\x7f');
  });

  it('keeps owners (32-bit), permission bits with setuid/setgid/sticky, and nanosecond times before 1970 and after 2038', () => {
    for (const [path, node] of expected) {
      const r = inodeAt(path);
      expect([path, r.perm, r.uid, r.gid], path).toEqual([path, node.meta.mode, node.meta.uid, node.meta.gid]);
      expect(r.times, path).toEqual(times(node.meta));
    }
  });

  it('takes the root directory from the tree and makes lost+found as mke2fs does', () => {
    const root = tree.inodes.get(2)!;
    expect([root.perm, root.uid, root.gid, root.type]).toEqual([0o711, 5, 6, 'directory']);
    expect(root.times.mtime).toEqual(encodeTime({ sec: 1_600_000_000, nsec: 1 }));
    // ".." of the root is the root; 2 + its subdirectories.
    expect(root.links).toBe(2 + 4);
    const lf = inodeAt('/lost+found');
    expect([lf.ino, lf.perm, lf.uid, lf.gid, lf.size, lf.links]).toEqual([11, 0o700, 0, 0, 16384, 2]);
    expect(lf.times.mtime).toEqual([EPOCH, 0]);
  });

  it('gives a hard link one inode with the link count of its names', () => {
    const inos = ['/hard1', '/sub/hard2', '/sub/deeper/hard3'].map((p) => tree.entries.find((e) => e.path === p)!.ino);
    expect(new Set(inos).size).toBe(1);
    expect(inodeAt('/hard1').links).toBe(3);
    expect(inodeAt('/hard1').sha256).toBe(sha(linked));
    expect(inodeAt('/sub').links).toBe(3);
  });

  it('stores device numbers in the old encoding when they fit and the new one otherwise', () => {
    expect(inodeAt('/null').device).toEqual([1, 3]);
    expect(inodeAt('/sda').device).toEqual([8, 0]);
    expect(inodeAt('/zero').device).toEqual([0, 0]);
    expect(inodeAt('/bigdev').device).toEqual([259, 70_000]);
    expect(inodeAt('/maxdev').device).toEqual([4095, 1_048_575]);
    expect(inodeAt('/minor256').device).toEqual([4, 256]);
    expect(inodeAt('/null').type).toBe('character');
    expect(inodeAt('/sda').type).toBe('block');
    expect(inodeAt('/fifo').type).toBe('FIFO');
    expect(inodeAt('/sock').type).toBe('socket');
    // Raw i_block: old encoding in word 0; new in word 1: 259:70000 is 0x11110370.
    expect(debugfs(img, 'stat /null')).toMatch(/Device major\/minor number: 01:03/);
    expect(debugfs(img, 'inode_dump -b /bigdev')).toMatch(/^0000 {2}0000 0000 7003 1111/m);
  });

  it('stores short symlinks in the inode and longer ones in a block', () => {
    for (const p of ['/fast', '/fast59', '/slow60', '/slowmax', '/binlink']) {
      const n = expected.get(p)! as Extract<Node, { kind: 'symlink' }>;
      const r = inodeAt(p);
      expect([p, r.type, r.target, r.size]).toEqual([p, 'symlink', n.target, n.target.length]);
    }
    expect(inodeAt('/fast59').blockcount).toBe(0);
    expect(inodeAt('/fast59').flags).toBe(0);
    expect(inodeAt('/slow60').blockcount).toBe(8);
    expect(inodeAt('/slow60').flags).toBe(0x80000);
  });

  it('keeps every file byte', () => {
    const byName: Record<string, string> = {
      '/suid': 'suid',
      '/owners': 'owners',
      ['/' + 'n'.repeat(255)]: 'long',
      '/\xff\xfe-not-utf8': 'bin',
      '/new\nline': 'newline',
      '/empty': 'empty',
      '/\xe9t\xe9/\x01\x7f': 'ctl',
    };
    for (const [p, k] of Object.entries(byName)) expect(inodeAt(p).sha256, p).toBe(sha(contents.get(k)!));
    expect(inodeAt('/empty').blockcount).toBe(0);
    expect(inodeAt('/empty').flags).toBe(0x80000);
  });
});
