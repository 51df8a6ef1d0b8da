// Randomised round trip: seeded trees with odd names, hard links, holes, xattrs, devices and big directories, read back with debugfs.
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeTime } from '../../../src/disk/ext4/inode.js';
import { Ext4Writer, MemoryStore } from '../../../src/disk/ext4/index.js';
import type { DirNode, FileNode, Node, NodeMeta } from '../../../src/rootfs/tree.js';
import { chunksOf, EPOCH, expectClean, tmp, writeImage } from './helpers.js';
import { readTree } from './readback.js';

const t = tmp();
afterAll(() => t.done());

/** xorshift32: small, fast, seeded. */
function prng(seed: number): { int(n: number): number; chance(p: number): boolean; bytes(n: number): Buffer } {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  return {
    int: (n) => next() % n,
    chance: (p) => next() / 2 ** 32 < p,
    bytes: (n) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
  };
}

type R = ReturnType<typeof prng>;

const KIND_TYPE: Record<Node['kind'], string> = {
  file: 'regular',
  dir: 'directory',
  symlink: 'symlink',
  char: 'character',
  block: 'block',
  fifo: 'FIFO',
  socket: 'socket',
};

function name(r: R, taken: Set<string>): string {
  for (;;) {
    const len = r.chance(0.05) ? 200 + r.int(56) : 1 + r.int(24);
    let s = '';
    for (let i = 0; i < len; i++) {
      let c = r.chance(0.8) ? 0x61 + r.int(26) : 1 + r.int(255);
      if (c === 0x2f) c = 0x5f;
      s += String.fromCharCode(c);
    }
    if (s !== '.' && s !== '..' && !taken.has(s)) return s;
  }
}

function time(r: R): { sec: number; nsec: number } {
  const pick = r.int(4);
  const sec = pick === 0 ? -r.int(2 ** 31) : pick === 1 ? 2 ** 31 + r.int(2 ** 32) : r.int(2 ** 31);
  return { sec, nsec: r.int(1_000_000_000) };
}

function acl(r: R): Buffer {
  const tags: Array<[number, number]> = [
    [1, r.int(8)],
    [2, r.int(8)],
    [4, r.int(8)],
    [0x10, 7],
    [0x20, r.int(8)],
  ];
  const b = Buffer.alloc(4 + 8 * tags.length);
  b.writeUInt32LE(2, 0);
  tags.forEach(([tag, perm], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(tag === 2 ? r.int(100_000) : 0, 8 + 8 * i);
  });
  return b;
}

function randomMeta(r: R): NodeMeta {
  const xattrs = new Map<string, Buffer>();
  if (r.chance(0.2)) {
    for (let i = r.int(4); i >= 0; i--) {
      const ns = ['user.', 'trusted.', 'security.'][r.int(3)]!;
      xattrs.set(`${ns}k${r.int(1000)}.${r.int(10)}`, r.bytes(r.chance(0.1) ? 300 + r.int(400) : r.int(40)));
    }
  }
  if (r.chance(0.03)) xattrs.set('system.posix_acl_access', acl(r));
  return {
    mode: r.int(0o10000),
    uid: r.chance(0.5) ? r.int(70_000) : r.int(2 ** 32),
    gid: r.int(2 ** 32),
    mtime: time(r),
    atime: time(r),
    ctime: time(r),
    xattrs,
  };
}

/** Content with runs of zero blocks (holes) and an odd tail. */
function content(r: R): Buffer {
  const blocks = r.chance(0.5) ? r.int(2) : r.int(60);
  const b = Buffer.alloc(blocks * 4096 + (r.chance(0.7) ? r.int(4096) : 0));
  for (let i = 0; i * 4096 < b.length; i++)
    if (r.chance(0.6)) r.bytes(Math.min(4096, b.length - i * 4096)).copy(b, i * 4096);
  return b;
}

interface Built {
  root: DirNode;
  data: Map<FileNode, Buffer>;
}

async function build(w: Ext4Writer, seed: number): Promise<Built> {
  const r = prng(seed);
  const mem = new MemoryStore();
  const data = new Map<FileNode, Buffer>();
  const files: FileNode[] = [];
  let budget = 3000;
  let bigDone = false;
  const makeDir = async (depth: number): Promise<DirNode> => {
    const d: DirNode = { kind: 'dir', meta: randomMeta(r), entries: new Map() };
    // One directory big enough for an htree; the rest small, shallower ones fuller.
    const big = depth === 1 && !bigDone;
    bigDone ||= big;
    const n = depth === 0 ? 40 : big ? 1200 : r.int(depth > 3 ? 4 : 16);
    const taken = new Set<string>();
    for (let i = 0; i < n && budget > 0; i++, budget--) {
      const nm = name(r, taken);
      taken.add(nm);
      const k = r.int(100);
      let node: Node;
      if (k < 50 || big) {
        if (files.length > 0 && r.chance(0.05)) {
          node = files[r.int(files.length)]!;
        } else {
          const c = content(r);
          const how = r.int(3);
          const ref =
            how === 0
              ? w.putBuffer(c)
              : how === 1
                ? await w.put(chunksOf(c, 1 + r.int(10_000)), c.length)
                : mem.putBuffer(c);
          if (r.chance(0.1)) w.release(w.putBuffer(r.bytes(8192)));
          const f: FileNode = { kind: 'file', meta: randomMeta(r), size: c.length, data: ref };
          files.push(f);
          data.set(f, c);
          node = f;
        }
      } else if (k < (depth < 2 ? 80 : 65) && depth < 5) {
        node = await makeDir(depth + 1);
      } else if (k < 82) {
        const len = r.chance(0.5) ? 1 + r.int(59) : 60 + r.int(500);
        let tgt = '';
        for (let j = 0; j < len; j++) tgt += String.fromCharCode(1 + r.int(255));
        node = { kind: 'symlink', meta: randomMeta(r), target: tgt };
      } else if (k < 90) {
        node = {
          kind: r.chance(0.5) ? 'char' : 'block',
          meta: randomMeta(r),
          major: r.int(4096),
          minor: r.int(1 << 20),
        };
      } else {
        node = { kind: r.chance(0.5) ? 'fifo' : 'socket', meta: randomMeta(r) };
      }
      d.entries.set(nm, node);
    }
    return d;
  };
  return { root: await makeDir(0), data };
}

/** debugfs converts ACLs back with id 0 in the entries that have none. */
function debugfsView(name: string, v: Buffer): Buffer {
  if (!name.startsWith('system.posix_acl')) return v;
  const b = Buffer.from(v);
  for (let o = 4; o < b.length; o += 8) if (![2, 8].includes(b.readUInt16LE(o))) b.writeUInt32LE(0, o + 4);
  return b;
}

describe('random trees', () => {
  for (const seed of [1, 2, 3]) {
    it(`round-trip every name, attribute, xattr and byte (seed ${seed})`, async () => {
      const img = t.path(`random-${seed}.img`);
      let built: Built | undefined;
      await writeImage(
        img,
        async (w) => {
          built = await build(w, seed);
          return built.root;
        },
        { sizeBytes: 128 << 20, inodeCount: 8192 },
      );
      const b = built!;
      expectClean(img);
      const back = readTree(img, t.dir);
      // Expected paths and the node behind each.
      const want = new Map<string, Node>();
      const walk = (d: DirNode, p: string): void => {
        for (const [n, c] of d.entries) {
          want.set(`${p}/${n}`, c);
          if (c.kind === 'dir') walk(c, `${p}/${n}`);
        }
      };
      walk(b.root, '');
      const got = new Map(back.entries.filter((e) => e.path !== '/lost+found').map((e) => [e.path, e]));
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      const inoOf = new Map<Node, number>();
      const names = new Map<Node, number>();
      for (const n of want.values()) names.set(n, (names.get(n) ?? 0) + 1);
      for (const [p, node] of want) {
        const e = got.get(p)!;
        const ino = inoOf.get(node);
        if (ino !== undefined) expect(e.ino, `${p} is a hard link`).toBe(ino);
        inoOf.set(node, e.ino);
        const r = back.inodes.get(e.ino)!;
        const m = node.meta;
        const where = JSON.stringify(p);
        expect([where, r.type, r.perm, r.uid, r.gid], where).toEqual([
          where,
          KIND_TYPE[node.kind],
          m.mode,
          m.uid,
          m.gid,
        ]);
        expect(r.times, where).toEqual({
          mtime: encodeTime(m.mtime),
          atime: encodeTime(m.atime!),
          ctime: encodeTime(m.ctime!),
          crtime: [EPOCH, 0],
        });
        expect(new Map([...r.xattrs]), where).toEqual(new Map([...m.xattrs].map(([k, v]) => [k, debugfsView(k, v)])));
        if (node.kind === 'dir') {
          expect(r.links, where).toBe(2 + [...node.entries.values()].filter((c) => c.kind === 'dir').length);
        } else {
          expect(r.links, where).toBe(names.get(node));
        }
        if (node.kind === 'file') {
          expect([where, r.size, r.sha256], where).toEqual([
            where,
            node.size,
            createHash('sha256').update(b.data.get(node)!).digest('hex'),
          ]);
        }
        if (node.kind === 'symlink') expect(r.target, where).toBe(node.target);
        if (node.kind === 'char' || node.kind === 'block') expect(r.device, where).toEqual([node.major, node.minor]);
      }
    });
  }
});
