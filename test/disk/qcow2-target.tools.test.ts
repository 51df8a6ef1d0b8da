// Qcow2Target: the file it writes is a valid qcow2 (qemu-img check/info/map) with exactly the bytes a raw target gets (qemu-img compare).
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GiB, MiB } from '../../src/core/units.js';
import { RawFileTarget } from '../../src/disk/target.js';
import { CLUSTER } from '../../src/disk/qcow2/format.js';
import { WRITE_PIECE } from '../../src/disk/qcow2/io.js';
import { Qcow2Target } from '../../src/disk/qcow2/target.js';
import { run } from '../../src/tools/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'img2vm-qcow2-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const file = (ext: string) => join(tmp, `t${n++}.${ext}`);

/** A small seeded PRNG (mulberry32): the same seed gives the same write sequence on every machine. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo));
  // Incompressible bytes are slices of one seeded pool at random offsets: cheap, and still different per write.
  let pool: Buffer | undefined;
  const random = (len: number) => {
    if (!pool) {
      const words = new Uint32Array(1 << 20);
      for (let i = 0; i < words.length; i++) words[i] = next() * 2 ** 32;
      pool = Buffer.from(words.buffer);
    }
    const out = Buffer.alloc(len);
    for (let at = 0; at < len;) {
      const from = int(0, pool.length / 2);
      at += pool.copy(out, at, from, from + Math.min(len - at, pool.length / 2));
    }
    return out;
  };
  const bytes = (len: number, compressible = false) => {
    if (!compressible) return random(len);
    const b = Buffer.alloc(len);
    const word = Buffer.from(`img2vm ${int(0, 1000)} `);
    for (let i = 0; i < len; i++) b[i] = word[i % word.length]!;
    for (let i = 0; i < len; i += 97) b[i] = int(0, 256);
    return b;
  };
  return { next, int, bytes };
}

/** Applies each operation to a qcow2 and a raw target and checks every read against the raw one. */
class Pair {
  readonly q: Qcow2Target;
  readonly r: RawFileTarget;
  constructor(
    readonly qPath = file('qcow2'),
    readonly rPath = file('raw'),
    opts: { size?: number; compress?: boolean } = {},
  ) {
    this.q = new Qcow2Target(qPath, opts);
    this.r = new RawFileTarget(rPath);
    if (opts.size !== undefined) this.r.resize(opts.size);
  }
  write(b: Uint8Array, off: number) {
    this.q.write(b, off);
    this.r.write(b, off);
  }
  resize(bytes: number) {
    this.q.resize(bytes);
    this.r.resize(bytes);
  }
  readCheck(off: number, len: number) {
    const a = Buffer.alloc(len, 0xaa);
    const b = Buffer.alloc(len, 0x55);
    const got = this.q.read(a, off);
    expect(got).toBe(this.r.read(b, off));
    expect(a.subarray(0, got).equals(b.subarray(0, got))).toBe(true);
  }
  close() {
    expect(this.q.size()).toBe(this.r.size());
    // qcow2 counts the virtual size in sectors; give the raw the same size so a strict compare applies.
    this.r.resize(Math.ceil(this.r.size() / 512) * 512);
    this.q.close();
    this.r.close();
  }
}

async function qemuImg(...args: string[]) {
  return run('qemu-img', args);
}

interface CheckResult {
  'check-errors': number;
  corruptions?: number;
  leaks?: number;
  'allocated-clusters': number;
  'compressed-clusters'?: number;
}

/** qemu-img check must find nothing: no corruption, no leak, no error. */
async function expectValid(path: string): Promise<CheckResult> {
  const r = await run('qemu-img', ['check', '--output=json', '-f', 'qcow2', path], { reject: false });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  const j = JSON.parse(r.stdout) as CheckResult;
  expect(j['check-errors']).toBe(0);
  expect(j.corruptions ?? 0).toBe(0);
  expect(j.leaks ?? 0).toBe(0);
  return j;
}

/** The same virtual size and the same bytes everywhere (compare -s would also demand the same allocation, which sparse zeros break). */
async function expectSameAsRaw(qcow2: string, raw: string) {
  const info = JSON.parse((await qemuImg('info', '--output=json', '-f', 'qcow2', qcow2)).stdout);
  expect(info['virtual-size']).toBe(statSync(raw).size);
  const r = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, qcow2], { reject: false });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  expect(r.stdout).toContain('Images are identical');
}

interface MapEntry {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  offset?: number;
}
async function qemuMap(path: string): Promise<MapEntry[]> {
  return JSON.parse((await qemuImg('map', '--output=json', '-f', 'qcow2', path)).stdout) as MapEntry[];
}

const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

describe('Qcow2Target layout and header', () => {
  it('writes the header qemu-img writes: v3, 64 KiB clusters, 16-bit refcounts, zlib, no feature bits', async () => {
    const p = new Pair(undefined, undefined, { size: 64 * MiB });
    p.write(Buffer.alloc(5000, 7), 3 * MiB + 100);
    p.close();
    const info = JSON.parse((await qemuImg('info', '--output=json', p.qPath)).stdout);
    expect(info).toMatchObject({
      format: 'qcow2',
      'virtual-size': 64 * MiB,
      'cluster-size': CLUSTER,
      'dirty-flag': false,
      'format-specific': {
        type: 'qcow2',
        data: {
          compat: '1.1',
          'compression-type': 'zlib',
          'lazy-refcounts': false,
          'refcount-bits': 16,
          corrupt: false,
          'extended-l2': false,
        },
      },
    });
    expect(info['backing-filename']).toBeUndefined();
    // qemu-img's own qcow2 of the same disk: the first cluster differs only in where the tables are.
    const ref = file('qcow2');
    await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', p.rPath, ref);
    const ours = readFileSync(p.qPath).subarray(0, CLUSTER);
    const theirs = readFileSync(ref).subarray(0, CLUSTER);
    for (const [at, len] of [
      [40, 8],
      [48, 8],
    ] as const) {
      ours.fill(0, at, at + len);
      theirs.fill(0, at, at + len);
    }
    expect(ours.equals(theirs)).toBe(true);
  });

  it('puts data after the header in first-write order and the tables at the end, with nothing after them', async () => {
    const p = new Pair(undefined, undefined, { size: GiB });
    p.write(Buffer.alloc(CLUSTER, 1), 10 * CLUSTER);
    p.write(Buffer.alloc(CLUSTER, 2), 3 * CLUSTER);
    p.close();
    const map = (await qemuMap(p.qPath)).filter((e) => e.data);
    expect(map).toEqual([
      expect.objectContaining({ start: 3 * CLUSTER, length: CLUSTER, offset: 2 * CLUSTER }),
      expect.objectContaining({ start: 10 * CLUSTER, length: CLUSTER, offset: CLUSTER }),
    ]);
    // header, 2 data clusters, one L2 table, L1, one refcount block, the refcount table
    expect(statSync(p.qPath).size).toBe(7 * CLUSTER);
    await expectValid(p.qPath);
    await expectSameAsRaw(p.qPath, p.rPath);
  });

  it('leaves never-written and all-zero clusters unallocated', async () => {
    const p = new Pair(undefined, undefined, { size: 256 * MiB });
    p.write(Buffer.alloc(4 * MiB), 8 * MiB); // whole clusters of zeros
    p.write(Buffer.alloc(100), 20 * MiB + 7); // a partial zero write into an unallocated cluster
    p.write(Buffer.from('x'), 30 * MiB);
    expect(p.q.stats.allocatedClusters).toBe(1);
    p.readCheck(8 * MiB - 10, 2 * CLUSTER);
    p.close();
    const j = await expectValid(p.qPath);
    expect(j['allocated-clusters']).toBe(1);
    await expectSameAsRaw(p.qPath, p.rPath);
  });

  it('keeps zero writes that overwrite earlier data', async () => {
    const p = new Pair(undefined, undefined, { size: 8 * MiB });
    p.write(Buffer.alloc(3 * CLUSTER, 9), CLUSTER);
    p.write(Buffer.alloc(CLUSTER + 10), CLUSTER + 5);
    p.readCheck(0, 5 * CLUSTER);
    p.close();
    await expectValid(p.qPath);
    await expectSameAsRaw(p.qPath, p.rPath);
  });

  it('qemu can go on writing the file: grow it, write over and beside our clusters (compressed ones too)', async () => {
    for (const compress of [false, true]) {
      const p = new Pair(undefined, undefined, { size: 32 * MiB, compress });
      p.write(prng(8).bytes(3 * MiB, true), MiB);
      p.close();
      await qemuImg('resize', '-f', 'qcow2', p.qPath, '3G');
      const other = file('raw');
      const t = new RawFileTarget(other);
      t.resize(3 * 1024 * MiB);
      t.write(prng(9).bytes(3 * MiB), 2 * MiB);
      t.write(prng(10).bytes(MiB), 2500 * MiB);
      t.close();
      // -n writes into the existing image through qemu's own allocator and refcounting.
      await qemuImg('convert', '-n', '-f', 'raw', '-O', 'qcow2', other, p.qPath);
      await expectValid(p.qPath);
      await expectSameAsRaw(p.qPath, other);
    }
  });

  it('an empty disk is the four table clusters and passes check', async () => {
    const q = new Qcow2Target(file('qcow2'), { size: GiB });
    q.close();
    expect(statSync(q.path).size).toBe(4 * CLUSTER);
    await expectValid(q.path);
    expect((await qemuMap(q.path)).every((e) => !e.data)).toBe(true);
  });

  it('a zero-sized disk has no L1 table and passes check', async () => {
    const q = new Qcow2Target(file('qcow2'));
    q.close();
    expect(statSync(q.path).size).toBe(3 * CLUSTER);
    await expectValid(q.path);
  });

  it('rounds a virtual size that is not whole sectors up, never cutting off written bytes', async () => {
    const q = new Qcow2Target(file('qcow2'));
    q.write(Buffer.from('end'), 1000);
    expect(q.size()).toBe(1003);
    q.close();
    const info = JSON.parse((await qemuImg('info', '--output=json', q.path)).stdout);
    expect(info['virtual-size']).toBe(1024);
    await expectValid(q.path);
  });
});

describe('Qcow2Target reads back what was written', () => {
  it('serves reads from the in-memory tail, from the file and from holes', () => {
    const q = new Qcow2Target(file('qcow2'), { size: 64 * MiB });
    q.write(Buffer.alloc(4096, 1), 5 * MiB); // tail
    q.write(Buffer.alloc(MiB, 2), 40 * MiB + 4096); // direct, partial first and last cluster
    const b = Buffer.alloc(MiB + 8192, 0xff);
    expect(q.read(b, 40 * MiB)).toBe(b.length);
    expect(b.subarray(0, 4096).every((x) => x === 0)).toBe(true);
    expect(b.subarray(4096, 4096 + MiB).every((x) => x === 2)).toBe(true);
    expect(b.subarray(4096 + MiB).every((x) => x === 0)).toBe(true);
    const c = Buffer.alloc(8192, 0xff);
    expect(q.read(c, 5 * MiB - 4096)).toBe(8192);
    expect([c[0], c[4095], c[4096], c[8191]]).toEqual([0, 0, 1, 1]);
    expect(q.read(Buffer.alloc(10), 64 * MiB - 4)).toBe(4);
    expect(q.read(Buffer.alloc(10), 64 * MiB)).toBe(0);
    q.close();
  });

  it('writes each sequential 1 MiB write as one run (in WRITE_PIECE syscalls) and small fresh writes into the tail', () => {
    const q = new Qcow2Target(file('qcow2'), { size: GiB });
    const chunk = Buffer.alloc(MiB, 3);
    for (let i = 0; i < 16; i++) q.write(chunk, 100 * MiB + 4096 + i * MiB);
    const calls = 16 * (MiB / WRITE_PIECE);
    expect(q.stats.writeCalls).toBe(calls);
    for (let i = 0; i < 20; i++) q.write(Buffer.alloc(4096, 4), 200 * MiB + i * 16 * MiB);
    expect(q.stats.writeCalls).toBe(calls);
    q.close();
  });
});

/** A random mix of what a file-system writer does: long sequential runs, scattered small writes, overwrites, zeros, growth. */
function randomOps(p: Pair, seed: number, opts: { ops: number; span: number; compressible?: boolean }) {
  const r = prng(seed);
  let seq = r.int(0, opts.span);
  const written: Array<[number, number]> = [];
  for (let i = 0; i < opts.ops; i++) {
    const k = r.next();
    const size = Math.max(p.q.size(), 1);
    if (k < 0.35) {
      const off = r.int(0, Math.floor(size * 1.05) + 1);
      const len = r.int(1, 9000);
      p.write(r.bytes(len, opts.compressible), off);
      written.push([off, len]);
    } else if (k < 0.55) {
      const len = r.int(CLUSTER, 2 * MiB);
      if (r.next() < 0.2) seq = r.int(0, opts.span);
      p.write(r.bytes(len, opts.compressible), seq);
      written.push([seq, len]);
      seq += len;
    } else if (k < 0.65) {
      const aligned = r.next() < 0.5;
      const off = aligned ? r.int(0, opts.span / CLUSTER) * CLUSTER : r.int(0, opts.span);
      p.write(Buffer.alloc(aligned ? CLUSTER * r.int(1, 4) : r.int(1, 3 * CLUSTER)), off);
    } else if (k < 0.78 && written.length > 0) {
      const [off, len] = written[r.int(0, written.length)]!;
      const a = off + r.int(0, len);
      p.write(r.bytes(r.int(1, Math.min(len, 200_000)), opts.compressible), a);
    } else if (k < 0.8) {
      p.resize(r.next() < 0.7 ? size + r.int(0, 16 * MiB) : r.int(Math.floor(size / 2), size));
    } else {
      const off = r.int(0, size + 1000);
      p.readCheck(off, r.int(1, 3 * CLUSTER));
    }
  }
  // Everything, back through the target, before close().
  for (let off = 0; off < p.q.size(); off += 4 * MiB) p.readCheck(off, 4 * MiB);
}

describe('Qcow2Target with random write sequences', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`seed ${seed}: check passes and the disk equals the raw written the same way`, async () => {
      const p = new Pair(undefined, undefined, { size: 24 * MiB });
      randomOps(p, seed, { ops: 150, span: 24 * MiB });
      p.close();
      await expectValid(p.qPath);
      await expectSameAsRaw(p.qPath, p.rPath);
    });
  }

  it('the same write sequence gives the same bytes (and these bytes: a golden digest)', () => {
    const digest = () => {
      const p = new Pair(undefined, undefined, { size: 24 * MiB });
      randomOps(p, 42, { ops: 120, span: 24 * MiB });
      p.close();
      return sha256(p.qPath);
    };
    const a = digest();
    expect(digest()).toBe(a);
    expect(a, `the digest is now ${a}`).toBe(GOLDEN_SEED42);
  });

  it('a 2 TiB virtual disk with a few MiB written in far-apart places', async () => {
    const tib2 = 2 * 1024 * GiB;
    const p = new Pair(undefined, undefined, { size: tib2 });
    const r = prng(99);
    for (const off of [0, 700 * GiB + 123, 1024 * GiB, tib2 - 3 * MiB - 17]) p.write(r.bytes(MiB + 4096), off);
    p.write(r.bytes(512), tib2 - 512);
    p.close();
    expect(statSync(p.qPath).size).toBeLessThan(16 * MiB);
    await expectValid(p.qPath);
    await expectSameAsRaw(p.qPath, p.rPath);
    const info = JSON.parse((await qemuImg('info', '--output=json', p.qPath)).stdout);
    expect(info['virtual-size']).toBe(tib2);
  });

  it('shrinking drops the clusters past the end (no leaks) and growing again reads zeros there', async () => {
    const p = new Pair(undefined, undefined, { size: 32 * MiB });
    p.write(prng(5).bytes(20 * MiB), 2 * MiB);
    p.resize(10 * MiB + 777);
    p.resize(40 * MiB);
    p.readCheck(10 * MiB, MiB);
    p.write(Buffer.from('after'), 30 * MiB);
    p.close();
    await expectValid(p.qPath);
    await expectSameAsRaw(p.qPath, p.rPath);
  });
});

describe('Qcow2Target --compress', () => {
  for (const seed of [11, 12, 13]) {
    it(`seed ${seed}: compressed clusters qemu reads back exactly, no leaks`, async () => {
      const p = new Pair(undefined, undefined, { size: 24 * MiB, compress: true });
      randomOps(p, seed, { ops: 120, span: 24 * MiB, compressible: seed !== 13 });
      p.close();
      const j = await expectValid(p.qPath);
      if (seed !== 13) expect(j['compressed-clusters']).toBeGreaterThan(0);
      await expectSameAsRaw(p.qPath, p.rPath);
    });
  }

  it('packs compressible data smaller than qemu-img convert -c leaves it at most a little larger, and is deterministic', async () => {
    const run1 = () => {
      const p = new Pair(undefined, undefined, { size: 16 * MiB, compress: true });
      const r = prng(3);
      p.write(r.bytes(6 * MiB, true), MiB);
      p.write(Buffer.alloc(2 * CLUSTER, 0), 2 * MiB); // becomes an all-zero, dropped cluster pair
      p.write(r.bytes(CLUSTER), 12 * MiB); // incompressible: stored as is
      p.close();
      return p;
    };
    const p = run1();
    const j = await expectValid(p.qPath);
    expect(j['compressed-clusters']).toBeGreaterThan(80);
    await expectSameAsRaw(p.qPath, p.rPath);
    expect(sha256(run1().qPath)).toBe(sha256(p.qPath));
    const ref = file('qcow2');
    await qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', p.rPath, ref);
    expect(statSync(p.qPath).size).toBeLessThan(statSync(ref).size * 1.1 + 4 * CLUSTER);
  });
});

// Changes only when the layout does; a change breaks byte-reproducibility across img2vm versions, so make it deliberately.
const GOLDEN_SEED42 = '239e100d97b4c16d7d6dbf2259aaacdf9d223c48a4dc09c59431aff99c011dc6';
