// Byte reproducibility: the same tree and options give the same image, whatever the timing and chunking; a golden hash pins the bytes.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { Ext4Writer } from '../../../src/disk/ext4/index.js';
import type { DirNode, Node } from '../../../src/rootfs/tree.js';
import { dir, expectClean, file, meta, tmp, ts, writeImage } from './helpers.js';

const t = tmp();
afterAll(() => t.done());
const GOLDEN = join(fileURLToPath(new URL('.', import.meta.url)), 'golden.sha256');

const payload = (n: number, seed: number): Buffer => Buffer.from(Buffer.alloc(n).map((_, i) => (i * seed + (i >> 9)) & 0xff));

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
  const [a, b] = await Promise.all([w.put(slowly(big, chunk, delayMs), big.length), w.put(slowly(payload(9000, 5), chunk, 0), 9000)]);
  const many = new Map<string, Node>();
  for (let i = 0; i < 300; i++) many.set(`entry-${i}`, { kind: 'fifo', meta: meta(0o600, { mtime: ts(1_650_000_000 + i, i) }) });
  return dir({
    etc: dir({ hostname: file(w.putBuffer(Buffer.from('golden\n')), 7), link: hl }),
    usr: dir({ bin: dir({ tool: file(a, big.length, meta(0o4755, { xattrs: new Map([['security.capability', Buffer.from('0100000200040000000000000000000000000000', 'hex')]]) })) }), lib: dir({ x: file(b, 9000), link: hl }) }),
    dev: dir({ null: { kind: 'char', meta: meta(0o666), major: 1, minor: 3 } }),
    many: dir(many),
    sym: { kind: 'symlink', meta: meta(0o777), target: 'usr/bin/tool' },
  }, meta(0o755, { mtime: ts(1_600_000_000, 0) }));
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
    expect(h, 'the image bytes changed: check with e2fsck/debugfs, then UPDATE_GOLDEN=1').toBe(readFileSync(GOLDEN, 'utf8').trim());
  });
});
