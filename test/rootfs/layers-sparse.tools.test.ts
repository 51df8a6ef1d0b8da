// Sparse files in layers: GNU tar's and bsdtar's sparse formats (old GNU 'S', PAX 0.0, 0.1 and 1.0) read to the same tree as dense tars, holes kept as holes, and hostile maps refused without blaming the download.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { MAX_SPARSE_REGIONS } from '../../src/rootfs/limits.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { ByteSource, TarReader } from '../../src/rootfs/tar.js';
import type { ContentRef, ContentStore, DirNode, FileNode } from '../../src/rootfs/tree.js';
import { padTo512, paxRecord, rawHeader, TAR_END } from './helpers.js';
import { bytes, flattenLayers, must } from './layers-helpers.js';

// ---- crafted sparse entries ----

function checksum(b: Buffer): Buffer {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** Octal where it fits, else base-256 (as GNU tar writes big numbers). */
function octal(b: Buffer, v: number, off: number, len: number): void {
  if (v < 8 ** (len - 1)) {
    b.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, 'latin1');
    return;
  }
  let x = BigInt(v);
  for (let i = len - 1; i > 0; i--, x >>= 8n) b[off + i] = Number(x & 0xffn);
  b[off] = 0x80;
}

type Region = [offset: number, length: number];

/** An old GNU sparse entry ('S'): 4 regions in the header, 21 in each extension block, then the data. */
function oldGnu(path: string, realSize: number, regions: Region[], data: Buffer): Buffer {
  const h = rawHeader({ name: path, typeflag: 'S', size: data.length, gnu: true });
  const put = (b: Buffer, at: number, [o, l]: Region): void => {
    octal(b, o, at, 12);
    octal(b, l, at + 12, 12);
  };
  regions.slice(0, 4).forEach((r, i) => put(h, 386 + 24 * i, r));
  octal(h, realSize, 483, 12);
  const ext: Buffer[] = [];
  for (let i = 4; i < regions.length; i += 21) {
    const b = Buffer.alloc(512);
    regions.slice(i, i + 21).forEach((r, j) => put(b, 24 * j, r));
    ext.push(b);
  }
  if (ext.length > 0) h[482] = 1;
  ext.forEach((b, i) => (b[504] = i < ext.length - 1 ? 1 : 0));
  return Buffer.concat([checksum(h), ...ext, padTo512(data)]);
}

/** A PAX entry with these records (binary strings) before a ustar header named name. */
function paxed(name: string, records: Array<[string, string]>, stored: Buffer, typeflag = '0'): Buffer {
  const pax = Buffer.from(records.map(([k, v]) => paxRecord(k, v)).join(''), 'latin1');
  return Buffer.concat([
    rawHeader({ name: 'PaxHeaders/x', typeflag: 'x', size: pax.length }),
    padTo512(pax),
    rawHeader({ name, typeflag, size: stored.length }),
    padTo512(stored),
  ]);
}

/** PAX sparse 1.0 (bsdtar's default, GNU tar --sparse-version=1.0): the map as text opens the data, padded to a block. */
function pax10(path: string, realSize: number, mapText: string, data: Buffer): Buffer {
  const map = padTo512(Buffer.from(mapText, 'latin1'));
  const recs: Array<[string, string]> = [
    ['GNU.sparse.major', '1'],
    ['GNU.sparse.minor', '0'],
    ['GNU.sparse.name', path],
    ['GNU.sparse.realsize', String(realSize)],
  ];
  return paxed(`GNUSparseFile.0/${path}`, recs, Buffer.concat([map, data]));
}

function mapText(regions: Region[]): string {
  return `${regions.length}\n${regions.map(([o, l]) => `${o}\n${l}\n`).join('')}`;
}

/** PAX sparse 0.1: the map in GNU.sparse.map. */
function pax01(path: string, realSize: number, regions: Region[], data: Buffer, count = regions.length): Buffer {
  return paxed(
    `GNUSparseFile.1/${path}`,
    [
      ['GNU.sparse.size', String(realSize)],
      ['GNU.sparse.numblocks', String(count)],
      ['GNU.sparse.name', path],
      ['GNU.sparse.map', regions.flat().join(',')],
    ],
    data,
  );
}

/** PAX sparse 0.0: GNU.sparse.offset and .numbytes records repeated in order, the path as usual. */
function pax00(path: string, realSize: number, regions: Region[], data: Buffer): Buffer {
  const recs: Array<[string, string]> = [
    ['GNU.sparse.size', String(realSize)],
    ['GNU.sparse.numblocks', String(regions.length)],
  ];
  for (const [o, l] of regions) recs.push(['GNU.sparse.offset', String(o)], ['GNU.sparse.numbytes', String(l)]);
  return paxed(path, recs, data);
}

const tar = (...entries: Buffer[]): Buffer => Buffer.concat([...entries, TAR_END]);

/** The file a map describes: data at the regions' offsets, zeros elsewhere. */
function expand(size: number, regions: Region[], data: Buffer): Buffer {
  const out = Buffer.alloc(size);
  let at = 0;
  for (const [o, l] of regions) {
    data.copy(out, o, at, at + l);
    at += l;
  }
  return out;
}

const DATA = Buffer.from('abcdefghij'.repeat(1000));

describe('crafted sparse entries in every form', () => {
  const regions: Region[] = [
    [4096, 3000],
    [20000, 10],
    [65536 * 3, 4096],
  ];
  const size = 65536 * 4 + 17;
  const data = DATA.subarray(0, 3000 + 10 + 4096);
  const want = expand(size, regions, data);
  const forms: Array<[string, Buffer]> = [
    ['old GNU S', oldGnu('f', size, regions, data)],
    ['PAX 0.0', pax00('f', size, regions, data)],
    ['PAX 0.1', pax01('f', size, regions, data)],
    ['PAX 1.0', pax10('f', size, mapText(regions), data)],
  ];
  for (const [form, layer] of forms) {
    it(`${form}: the real size, the data at its offsets, zeros between`, async () => {
      const { root, stats } = await flattenLayers([tar(layer)]);
      const n = must(root, 'f') as FileNode;
      expect(n.size).toBe(size);
      expect((await bytes(root, 'f')).equals(want)).toBe(true);
      // Blocks 1, 4 and 48 hold data; the root directory one block.
      expect(stats.blocks4k).toBe(3 + 1);
    });
  }

  it('old GNU S with more regions than the header holds reads its extension blocks', async () => {
    const many: Region[] = Array.from({ length: 50 }, (_, i) => [i * 8192 + i, 7]);
    const d = DATA.subarray(0, 50 * 7);
    const { root } = await flattenLayers([
      tar(oldGnu('many', 50 * 8192, many, d), oldGnu('next', 10, [[0, 10]], DATA.subarray(0, 10))),
    ]);
    expect((await bytes(root, 'many')).equals(expand(50 * 8192, many, d))).toBe(true);
    expect((await bytes(root, 'next')).toString()).toBe('abcdefghij');
  });

  it('GNU.sparse.name is the path even when a path record comes after it (GNU tar 0.1 writes both)', async () => {
    const layer = paxed(
      'x/GNUSparseFile.9/f',
      [
        ['GNU.sparse.size', '10'],
        ['GNU.sparse.numblocks', '1'],
        ['GNU.sparse.name', 'real/name'],
        ['GNU.sparse.map', '0,10'],
        ['path', 'x/GNUSparseFile.9/f'],
      ],
      DATA.subarray(0, 10),
    );
    const { root } = await flattenLayers([tar(layer)]);
    expect((await bytes(root, 'real/name')).toString()).toBe('abcdefghij');
  });

  it('a sparse file that is all hole, and one with a zero-length region at its end (as GNU tar writes)', async () => {
    const { root, stats } = await flattenLayers([
      tar(pax10('hole', 1 << 20, mapText([[1 << 20, 0]]), Buffer.alloc(0)), oldGnu('h2', 5000, [], Buffer.alloc(0))),
    ]);
    expect((await bytes(root, 'hole')).equals(Buffer.alloc(1 << 20))).toBe(true);
    expect((await bytes(root, 'h2')).equals(Buffer.alloc(5000))).toBe(true);
    expect(stats.blocks4k).toBe(1);
  });

  it('a store without putSparse gets the holes as zeros, and the same content', async () => {
    const mem = new MemoryStore();
    const plain: ContentStore = {
      put: (c, s) => mem.put(c, s),
      putBuffer: (d) => mem.putBuffer(d),
      release: (r) => mem.release(r),
      read: (r) => mem.read(r),
    };
    const { root } = await flattenLayers([tar(pax10('f', size, mapText(regions), data))], { store: plain });
    expect((await bytes(root, 'f')).equals(want)).toBe(true);
  });
});

/** A store that counts what it is handed: bytes of data, bytes of hole. */
class CountingStore implements ContentStore {
  data = 0;
  holes = 0;
  zeroBytes = 0;
  async put(chunks: AsyncIterable<Uint8Array>, size: number): Promise<ContentRef> {
    return this.putSparse(chunks, size);
  }
  async putSparse(parts: AsyncIterable<Uint8Array | number>, size: number): Promise<ContentRef> {
    let got = 0;
    for await (const p of parts) {
      if (typeof p === 'number') this.holes += p;
      else {
        this.data += p.length;
        for (const c of p) if (c === 0) this.zeroBytes++;
      }
      got += typeof p === 'number' ? p : p.length;
    }
    expect(got).toBe(size);
    return { store: this };
  }
  putBuffer(d: Uint8Array): ContentRef {
    this.data += d.length;
    return { store: this };
  }
  release(): void {}
  // eslint-disable-next-line require-yield
  async *read(): AsyncIterable<Buffer> {
    throw new Error('not kept');
  }
}

describe('holes are never made zeros for a store that takes them', () => {
  const TB = 1e12;
  const AT = 2 ** 39; // a block boundary half way
  for (const [form, layer] of [
    ['PAX 1.0', pax10('huge', TB, mapText([[AT, 4096]]), DATA.subarray(0, 4096))],
    ['old GNU S', oldGnu('huge', TB, [[AT, 4096]], DATA.subarray(0, 4096))],
  ] as const) {
    it(`${form}: a 1 TB file with 4 KiB of data is 4 KiB of data and two holes`, async () => {
      const store = new CountingStore();
      const { root, stats } = await flattenLayers([tar(layer)], { store });
      expect((must(root, 'huge') as FileNode).size).toBe(TB);
      expect(store.data).toBe(4096);
      expect(store.zeroBytes).toBe(0);
      expect(store.holes).toBe(TB - 4096);
      expect(stats.bytes).toBe(TB);
      expect(stats.blocks4k).toBe(1 + 1);
    });
  }
});

// ---- hostile maps ----

async function refused(layer: Buffer, re: RegExp): Promise<Img2vmError> {
  const e = await flattenLayers([tar(layer)]).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(Img2vmError);
  const err = e as Img2vmError;
  expect(err.kind).toBe('badImage');
  expect(err.message).toMatch(re);
  // The layer is well formed: fetching it again gives the same bytes.
  expect(err.hint).toBeTruthy();
  expect(err.hint).not.toMatch(/pull the image again|--pull/);
  return err;
}

describe('hostile sparse maps are refused, saying what is wrong', () => {
  const d = DATA.subarray(0, 200);
  it('overlapping regions', async () => {
    await refused(
      oldGnu(
        'f',
        1000,
        [
          [0, 100],
          [50, 100],
        ],
        d,
      ),
      /"f" is a sparse file whose map has region 2 at offset 50, before the end of region 1 \(100\)/,
    );
    await refused(
      pax10(
        'f',
        1000,
        mapText([
          [0, 100],
          [99, 100],
        ]),
        d,
      ),
      /region 2 at offset 99, before the end of region 1/,
    );
  });
  it('regions out of order', async () => {
    await refused(
      pax01(
        'f',
        1000,
        [
          [500, 100],
          [0, 100],
        ],
        d,
      ),
      /region 2 at offset 0, before the end of region 1 \(600\): regions must be in order/,
    );
    await refused(
      pax00(
        'f',
        1000,
        [
          [500, 100],
          [0, 100],
        ],
        d,
      ),
      /region 2 at offset 0/,
    );
  });
  it('a region past the real size', async () => {
    await refused(
      oldGnu(
        'f',
        150,
        [
          [0, 100],
          [100, 100],
        ],
        d,
      ),
      /region 2 ending at byte 200, past the file's size of 150 bytes/,
    );
    await refused(pax10('f', 1000, mapText([[2000, 200]]), d), /ending at byte 2200, past the file's size of 1000/);
  });
  it('a map with more data than the entry stores, and less', async () => {
    await refused(pax01('f', 1000, [[0, 300]], d), /regions holding 300 bytes of data, but the entry stores 200/);
    await refused(oldGnu('f', 1000, [[0, 50]], d), /regions holding 50 bytes of data, but the entry stores 200/);
  });
  it('a 1.0 map longer than the entry', async () => {
    const long = mapText(Array.from({ length: 100 }, (_, i): Region => [i * 10, 1]));
    // The map takes two blocks; the entry stores one.
    const layer = paxed(
      'GNUSparseFile.0/f',
      [
        ['GNU.sparse.major', '1'],
        ['GNU.sparse.minor', '0'],
        ['GNU.sparse.realsize', '1000'],
      ],
      padTo512(Buffer.from(long.slice(0, 512))),
    );
    await refused(layer, /map is longer than the entry's data \(0 bytes left\)/);
  });
  it('absurd counts of regions', async () => {
    await refused(
      pax10('f', 1000, '99999999999\n', d),
      /sparse file of 99999999999 or more data regions; the limit MAX_SPARSE_REGIONS is 1,000,000/,
    );
    await refused(pax01('f', 1000, [[0, 200]], d, 5_000_000), /5000000 or more data regions/);
    await refused(pax01('f', 1000, [[0, 200]], d, 2), /says it has 2 regions but lists 1/);
  });
  it(`an old GNU map of more than ${MAX_SPARSE_REGIONS} regions in extension blocks`, async () => {
    const n = MAX_SPARSE_REGIONS + 1;
    const regions: Region[] = Array.from({ length: n }, (_, i) => [i * 2, 0]);
    await refused(oldGnu('f', 2 * n, regions, Buffer.alloc(0)), /"f" is a sparse file of 1000001 or more data regions/);
  });
  it('numbers that are not numbers, and an unknown version', async () => {
    await refused(pax10('f', 1000, '1\n0\n-5\n', d), /byte 0x2d where a digit or a newline belongs/);
    await refused(pax10('f', 1000, '1\n0\n12345678901234567\n', d), /a number of more than 16 digits/);
    const v2 = paxed(
      'f',
      [
        ['GNU.sparse.major', '2'],
        ['GNU.sparse.minor', '0'],
      ],
      d,
    );
    await refused(v2, /GNU sparse format 2\.0, which img2vm does not read/);
  });
  it('a sparse map on an entry that is not a regular file', async () => {
    const layer = paxed(
      'd',
      [
        ['GNU.sparse.size', '10'],
        ['GNU.sparse.numblocks', '0'],
        ['GNU.sparse.map', ''],
      ],
      Buffer.alloc(0),
      '5',
    );
    await refused(layer, /"d" is a sparse file whose map is on a dir entry/);
  });
  it('a layer cut off inside a 1.0 map is a damaged layer (fetching it again may help)', async () => {
    const whole = tar(pax10('f', 1000, mapText([[0, 200]]), d));
    const e = await flattenLayers([whole.subarray(0, 1536 + 100)]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Img2vmError);
    expect((e as Img2vmError).message).toMatch(/layer is corrupt: unexpected end of data/);
  });
});

// ---- what GNU tar and bsdtar write ----

/** The paths of a tar's entries that are sparse files. */
async function sparseEntries(layer: Buffer): Promise<string[]> {
  const r = new TarReader(new ByteSource(Readable.from([layer])[Symbol.asyncIterator]()));
  const out: string[] = [];
  for (let h = await r.next(); h; h = await r.next()) if (h.sparse) out.push(h.path);
  return out;
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Files with holes where ext4 leaves them (on 4 KiB blocks): data runs at these offsets. */
const SOURCES: Record<string, { size: number; runs: Region[] }> = {
  middle: {
    size: 1 << 20,
    runs: [
      [8192, 5],
      [128 * 4096, 4096],
      [(1 << 20) - 100, 100],
    ],
  },
  many: { size: 60 * 65536, runs: Array.from({ length: 40 }, (_, i): Region => [i * 65536 + 4096, 10]) },
  'all-hole': { size: 1 << 20, runs: [] },
  lead: { size: 300 * 1024, runs: [[50 * 4096, 8192]] },
  [`${'d'.repeat(120)}/long-named`]: { size: 200000, runs: [[100000, 3]] },
  dense: { size: 5000, runs: [[0, 5000]] },
};

describe('layers GNU tar and bsdtar write of files with holes', () => {
  let dir: string;
  const want = new Map<string, string>();
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'img2vm-sparse-'));
    const src = join(dir, 'src');
    mkdirSync(join(src, 'd'.repeat(120)), { recursive: true });
    for (const [name, { size, runs }] of Object.entries(SOURCES)) {
      const fd = openSync(join(src, name), 'w');
      runs.forEach(([o, l], i) => writeSync(fd, Buffer.alloc(l, 0x41 + i), 0, l, o));
      ftruncateSync(fd, size);
      closeSync(fd);
      want.set(name, sha(readFileSync(join(src, name))));
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const writers: Array<[string, string[]]> = [
    ['GNU tar --format=gnu -S', ['tar', '--format=gnu', '-S']],
    ['GNU tar --format=posix --sparse-version=0.0', ['tar', '--format=posix', '--sparse-version=0.0']],
    ['GNU tar --format=posix --sparse-version=0.1', ['tar', '--format=posix', '--sparse-version=0.1']],
    ['GNU tar --format=posix --sparse-version=1.0', ['tar', '--format=posix', '--sparse-version=1.0']],
    ['GNU tar --format=posix -S (its default version)', ['tar', '--format=posix', '-S']],
    ['bsdtar (sparse files by default)', ['bsdtar']],
    ['GNU tar --format=posix without -S (dense)', ['tar', '--format=posix']],
  ];
  for (const [what, argv] of writers) {
    it(`${what}: every file's bytes, and blocks only where there is data`, async () => {
      const out = join(dir, `${argv.join('_').replace(/[^a-z0-9.]+/gi, '_')}.tar`);
      execFileSync(argv[0]!, [...argv.slice(1), '--numeric-owner', '-C', join(dir, 'src'), '-cf', out, '.']);
      const layer = readFileSync(out);
      const sparse = await sparseEntries(layer);
      if (what.includes('dense')) expect(sparse).toEqual([]);
      else expect(sparse).toContain('./middle');
      const { root, stats, warnings } = await flattenLayers([layer]);
      expect(warnings).toEqual([]);
      for (const name of Object.keys(SOURCES)) expect(sha(await bytes(root, name)), name).toBe(want.get(name));
      // The root and the long directory take a block each; files one per 4 KiB block with data (middle 3, many 40, lead 2, long-named 1, dense 2).
      expect(stats.blocks4k).toBe(2 + 3 + 40 + 2 + 1 + 2);
      expect((root as DirNode).entries.size).toBe(Object.keys(SOURCES).length);
    });
  }
});
