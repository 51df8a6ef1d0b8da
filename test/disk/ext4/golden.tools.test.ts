// Byte reproducibility: the same tree and options give the same image, whatever the timing and chunking; golden hashes pin the bytes.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryStore, type Ext4Writer } from '../../../src/disk/ext4/index.js';
import type { DirNode, Node } from '../../../src/rootfs/tree.js';
import { dir, expectClean, file, meta, tmp, ts, writeImage } from './helpers.js';

const t = tmp();
afterAll(() => t.done());
const HERE = fileURLToPath(new URL('.', import.meta.url));
const GOLDEN = join(HERE, 'golden.sha256');
const GOLDEN_WALK = join(HERE, 'golden-walk.sha256');

const payload = (n: number, seed: number): Buffer =>
  Buffer.from(Buffer.alloc(n).map((_, i) => (i * seed + (i >> 9)) & 0xff));

/** Yields the buffer in pieces of `size`, waiting `delayMs` between them. */
async function* slowly(b: Buffer, size: number, delayMs: number): AsyncIterable<Uint8Array> {
  for (let i = 0; i < b.length; i += size) {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    yield b.subarray(i, i + size);
  }
}

async function tree(w: Ext4Writer, chunk: number, delayMs: number): Promise<DirNode> {
  const big = payload(300_000, 7);
  const hl = file(w.putBuffer(payload(5000, 3)), 5000, meta(0o644, { uid: 1000, gid: 1000 }));
  // Puts started together still land in call order.
  const [a, b] = await Promise.all([
    w.put(slowly(big, chunk, delayMs), big.length),
    w.put(slowly(payload(9000, 5), chunk, 0), 9000),
  ]);
  const many = new Map<string, Node>();
  for (let i = 0; i < 300; i++)
    many.set(`entry-${i}`, { kind: 'fifo', meta: meta(0o600, { mtime: ts(1_650_000_000 + i, i) }) });
  return dir(
    {
      etc: dir({ hostname: file(w.putBuffer(Buffer.from('golden\n')), 7), link: hl }),
      usr: dir({
        bin: dir({
          tool: file(
            a,
            big.length,
            meta(0o4755, {
              xattrs: new Map([
                ['security.capability', Buffer.from('0100000200040000000000000000000000000000', 'hex')],
              ]),
            }),
          ),
        }),
        lib: dir({ x: file(b, 9000), link: hl }),
      }),
      dev: dir({ null: { kind: 'char', meta: meta(0o666), major: 1, minor: 3 } }),
      many: dir(many),
      sym: { kind: 'symlink', meta: meta(0o777), target: 'usr/bin/tool' },
    },
    meta(0o755, { mtime: ts(1_600_000_000, 0) }),
  );
}

/** Content of n blocks where block i holds data when keep(i), else a hole. */
function holes(n: number, keep: (i: number) => boolean): Buffer {
  const b = Buffer.alloc(n * 4096);
  for (let i = 0; i < n; i++) if (keep(i)) b.fill(i + 1, i * 4096, i * 4096 + 4096);
  return b;
}

/**
 * Every way the writer numbers a node and lists a directory: lost+found from the image with entries
 * (its inode, 11, comes before the breadth-first walk reaches them), names before and after it, hard
 * links (a file, an empty file, a symlink, a fifo) under several names at several depths, one first
 * met inside lost+found, a ref two nodes use (a copy), another store's files, directories of one
 * block, of a one-level and of a two-level htree, holes and extent trees, fast and slow symlinks,
 * devices and xattrs.
 */
function walkTree(w: Ext4Writer): DirNode {
  const mem = new MemoryStore();
  const data = (s: string): Node => file(w.putBuffer(Buffer.from(s)), s.length);
  const deepLink = data('met first three levels down\n');
  const emptyLink = file(w.putBuffer(Buffer.alloc(0)), 0);
  const symLink: Node = { kind: 'symlink', meta: meta(0o777), target: '../elsewhere' };
  const fifoLink: Node = { kind: 'fifo', meta: meta(0o600) };
  const shared = w.putBuffer(Buffer.from('one ref, two nodes\n'));
  const gappy = holes(40, (i) => i % 3 === 1);
  const leading = holes(3, (i) => i > 0);
  const wide = new Map<string, Node>();
  for (let i = 0; i < 700; i++)
    wide.set(`wide-entry-${(i * 37) % 700}`, i % 5 === 0 ? emptyLink : { kind: 'fifo', meta: meta(0o644) });
  const tall = new Map<string, Node>();
  for (let i = 0; i < 12_000; i++)
    tall.set(`${String(i).padStart(5, '0')}-${'n'.repeat(240)}`, { kind: 'fifo', meta: meta(0o644) });
  return dir(
    {
      'a-first': dir({
        b: dir({ c: dir({ deep: deepLink, empty: emptyLink, sym: symLink, fifo: fifoLink }), copy: file(shared, 19) }),
        gappy: file(w.putBuffer(gappy), gappy.length),
        leading: file(w.putBuffer(leading), leading.length),
        sparse: file(w.putBuffer(Buffer.alloc(3 * 4096)), 3 * 4096),
      }),
      'lost+found': dir(
        {
          again: deepLink,
          orphan: data('in lost+found\n'),
          sub: dir({ in: data('under lost+found\n'), sym: symLink }),
        },
        meta(0o700),
      ),
      'm-mid': dir({
        wide: dir(wide),
        tall: dir(tall),
        original: file(shared, 19),
        'deep-again': deepLink,
        'sym-again': symLink,
        'fifo-again': fifoLink,
      }),
      'z-last': dir({
        mem: file(mem.putBuffer(Buffer.from('another store\n')), 14),
        'mem-empty': file(mem.putBuffer(Buffer.alloc(0)), 0),
        long: { kind: 'symlink', meta: meta(0o777), target: `/${'t'.repeat(200)}` },
        tty: { kind: 'char', meta: meta(0o620, { gid: 5 }), major: 4, minor: 1 },
        big: { kind: 'block', meta: meta(0o660), major: 259, minor: 70000 },
        attrs: file(
          w.putBuffer(Buffer.from('x')),
          1,
          meta(0o644, {
            xattrs: new Map([
              ['user.big', Buffer.alloc(300, 1)],
              ['user.small', Buffer.from('v')],
            ]),
          }),
        ),
        'empty-dir': dir(),
        again: emptyLink,
      }),
    },
    meta(0o755, { mtime: ts(1_600_000_000, 0) }),
  );
}

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

describe('reproducible output', () => {
  it('is byte-identical across chunking and timing, and matches the golden hash', async () => {
    const one = t.path('one.img');
    const two = t.path('two.img');
    await writeImage(one, (w) => tree(w, 4096, 0), { sizeBytes: 40 << 20, inodeCount: 2048 });
    await writeImage(two, (w) => tree(w, 777, 2), { sizeBytes: 40 << 20, inodeCount: 2048 });
    expectClean(one);
    const h = sha(one);
    expect(sha(two)).toBe(h);
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(GOLDEN, `${h}\n`);
    expect(h, 'the image bytes changed: check with e2fsck/debugfs, then UPDATE_GOLDEN=1').toBe(
      readFileSync(GOLDEN, 'utf8').trim(),
    );
  });

  it('numbers and lists every kind of node as it did (a golden hash from before the walk kept no map per node)', async () => {
    const img = t.path('walk.img');
    await writeImage(img, walkTree, { sizeBytes: 64 << 20, inodeCount: 16384 });
    expectClean(img);
    const h = sha(img);
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(GOLDEN_WALK, `${h}\n`);
    expect(h, 'the image bytes changed: check with e2fsck/debugfs, then UPDATE_GOLDEN=1').toBe(
      readFileSync(GOLDEN_WALK, 'utf8').trim(),
    );
  });
});
