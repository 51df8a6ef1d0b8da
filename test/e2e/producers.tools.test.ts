// The producer matrix: one tree written as layers by GNU tar, bsdtar, Python's tarfile, Go's archive/tar, podman and Docker (uncompressed, gzip, zstd), converted by img2vm and read back from the ext4 it wrote.
//
// Each cell's ext4 (read with debugfs: type, mode, owner, size, content, link target, device,
// mtime with nanoseconds, xattrs and ACLs, hard-link groups, where the holes are) must equal the
// tree the OCI layer model makes of the layers (test/model), minus what that producer cannot
// write (CANNOT, with the reason), and e2fsck -fn must find nothing. The matrix is printed.
// Layers are built by fixtures/producers/build.sh (as root) and cached under ~/.cache/img2vm-fixtures.
import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildImage,
  imageBlobs,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  sha256,
  tarDirectory,
  writeLayout,
} from '../../fixtures/hostile/images.js';
import { debugfs, run } from '../disk/ext4/helpers.js';
import {
  diffListings,
  listingFromExt4,
  listingFromModel,
  showPath,
  type Difference,
  type Listing,
} from '../model/listing.js';
import { flattenModel, type LayerEntry, type Time } from '../model/oci-layers.js';
import { REPO, img2vm, sh } from './helpers.js';
import { LADDER, layers, specJson } from './producers/tree.js';

const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
const EPOCH: Time = { sec: 1_700_000_000, nsec: 0 };

type Compression = 'none' | 'gzip' | 'zstd';
type Producer =
  | 'gnutar-gnu'
  | 'gnutar-posix'
  | 'gnutar-gnu-sparse'
  | 'gnutar-posix-sparse'
  | 'bsdtar'
  | 'bsdtar-no-read-sparse'
  | 'python-pax'
  | 'python-gnu'
  | 'go'
  | 'docker'
  | 'podman';

/** How each producer is run (fixtures/producers/build.sh runs them so) and which compressions it writes itself. */
const PRODUCERS: Record<Producer, { how: string; compressions: Compression[]; zstdBy?: string }> = {
  'gnutar-gnu': { how: 'GNU tar --format=gnu', compressions: ['none', 'gzip', 'zstd'] },
  'gnutar-posix': { how: 'GNU tar --format=posix --xattrs --acls', compressions: ['none', 'gzip', 'zstd'] },
  'gnutar-gnu-sparse': { how: 'GNU tar --format=gnu -S', compressions: ['none'] },
  'gnutar-posix-sparse': { how: 'GNU tar --format=posix --xattrs --acls -S', compressions: ['none'] },
  bsdtar: {
    how: 'bsdtar (defaults: restricted pax, xattrs, ACLs, sparse files read)',
    compressions: ['none', 'gzip', 'zstd'],
  },
  'bsdtar-no-read-sparse': { how: 'bsdtar --no-read-sparse', compressions: ['none'] },
  'python-pax': {
    how: 'Python tarfile PAX_FORMAT, xattrs as SCHILY.xattr',
    compressions: ['none', 'gzip', 'zstd'],
    zstdBy: 'zstd(1)',
  },
  'python-gnu': { how: 'Python tarfile GNU_FORMAT', compressions: ['none', 'gzip', 'zstd'], zstdBy: 'zstd(1)' },
  go: {
    how: 'Go archive/tar FileInfoHeader + FormatPAX, xattrs as SCHILY.xattr',
    compressions: ['none', 'gzip', 'zstd'],
    zstdBy: 'zstd(1)',
  },
  docker: { how: 'docker build (classic builder) + docker save; gzip: docker push', compressions: ['none', 'gzip'] },
  podman: {
    how: 'podman build + podman save --format oci-archive --uncompressed; gzip, zstd: podman push --compression-format',
    compressions: ['none', 'gzip', 'zstd'],
  },
};

type Feature = 'user-xattrs' | 'capability' | 'acls' | 'long-whiteout';
type TimeRule = 'exact' | 'seconds' | 'python-float' | 'python-float-trunc' | 'libarchive' | 'docker' | 'podman';

const FROM_DISK = 'reads whiteouts from .wh. files on disk, where a .wh. name of 259 bytes cannot exist';
/** What each producer cannot write, with the reason; its expected tree is the model's without these. */
const CANNOT: Record<Producer, Partial<Record<Feature, string>>> = {
  'gnutar-gnu': {
    'user-xattrs': 'GNU tar stores xattrs only in PAX headers',
    capability: 'GNU tar stores xattrs only in PAX headers',
    acls: 'GNU tar stores ACLs only in PAX headers',
    'long-whiteout': FROM_DISK,
  },
  'gnutar-gnu-sparse': {
    'user-xattrs': 'GNU tar stores xattrs only in PAX headers',
    capability: 'GNU tar stores xattrs only in PAX headers',
    acls: 'GNU tar stores ACLs only in PAX headers',
    'long-whiteout': FROM_DISK,
  },
  'gnutar-posix': { 'long-whiteout': FROM_DISK },
  'gnutar-posix-sparse': { 'long-whiteout': FROM_DISK },
  bsdtar: { 'long-whiteout': FROM_DISK },
  'bsdtar-no-read-sparse': { 'long-whiteout': FROM_DISK },
  'python-pax': { 'long-whiteout': FROM_DISK },
  'python-gnu': {
    'user-xattrs': 'tarfile writes pax_headers only in PAX_FORMAT',
    capability: 'tarfile writes pax_headers only in PAX_FORMAT',
    acls: 'tarfile writes pax_headers only in PAX_FORMAT',
    'long-whiteout': FROM_DISK,
  },
  go: {},
  docker: {
    'user-xattrs': "Docker's layer writer (pkg/archive) records only security.capability",
    acls: "Docker's layer writer (pkg/archive) records only security.capability",
  },
  podman: { acls: "podman's layers carry no system.posix_acl_* records (user.* and security.capability they do)" },
};

/** Entries a producer adds of its own, left out of the comparison. */
const EXTRA: Partial<Record<Producer, { paths: string[]; why: string }>> = {
  podman: {
    paths: ['/dev', '/proc', '/run', '/sys', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf'],
    why: "buildah's RUN step leaves its mount points and the files it binds over in the layer",
  },
};

const LIBARCHIVE_TIMES =
  "restricted pax writes an mtime record only outside 0..2^31-1, so other times lose their fraction; it prints a record as the floor's digits, '.', the fraction, so -315619200.5 (floor -315619201) is written as -315619201.5, which every reader but libarchive takes as a second earlier";
/** How each producer writes an mtime. */
const TIMES: Record<Producer, { rule: TimeRule; why: string }> = {
  'gnutar-gnu': { rule: 'seconds', why: 'the GNU header holds whole seconds' },
  'gnutar-gnu-sparse': { rule: 'seconds', why: 'the GNU header holds whole seconds' },
  'gnutar-posix': { rule: 'exact', why: 'PAX mtime records with nanoseconds' },
  'gnutar-posix-sparse': { rule: 'exact', why: 'PAX mtime records with nanoseconds' },
  bsdtar: { rule: 'libarchive', why: LIBARCHIVE_TIMES },
  'bsdtar-no-read-sparse': { rule: 'libarchive', why: LIBARCHIVE_TIMES },
  'python-pax': { rule: 'python-float', why: 'gettarinfo takes st_mtime, a double, and writes str() of it' },
  'python-gnu': { rule: 'python-float-trunc', why: 'itn() writes int() of the double st_mtime: towards zero' },
  go: { rule: 'exact', why: 'FormatPAX writes nanoseconds' },
  docker: {
    rule: 'docker',
    why: "ADD unpacks with moby's Chtimes, which sets times before 1970 or after 2262 to the epoch; the layer writer truncates to seconds",
  },
  podman: {
    rule: 'podman',
    why: 'ADD unpacks through UnixNano, which overflows after 2262 (the host file system then stores its minimum, 1901-12-13T20:45:52Z); the layer writer truncates to seconds',
  },
};

interface Cell {
  producer: Producer;
  compression: Compression;
  id: string;
}

const CELLS: Cell[] = (Object.keys(PRODUCERS) as Producer[]).flatMap((producer) =>
  PRODUCERS[producer].compressions.map((compression) => ({ producer, compression, id: `${producer}.${compression}` })),
);

/** What a cell's conversion and read-back found. */
interface CellResult {
  exitCode: number;
  output: string;
  diffs: Difference[];
  fsck: string;
}

/** The line img2vm's error starts with, or '' when it succeeded. */
function errorLine(r: CellResult): string {
  return r.exitCode === 0
    ? ''
    : (r.output.split('\n').find((l) => l.startsWith('img2vm: error:')) ?? r.output.split('\n').at(-1) ?? '');
}

// ---- the expected tree per producer ----

function isWhiteout(e: LayerEntry): boolean {
  return (e.path.split('/').pop() ?? '').startsWith('.wh.');
}

/** A time as the producer writes it, read back exactly (PAX decimals cut at nanoseconds). */
function producerTime(t: Time, rule: TimeRule): Time {
  if (rule === 'exact') return t;
  if (rule === 'seconds') return { sec: t.sec, nsec: 0 };
  /** The last instant Go's UnixNano can hold (2262-04-11T23:47:16Z). */
  const goMax = 9_223_372_036;
  if (rule === 'docker') return t.sec < 0 || t.sec > goMax ? { sec: 0, nsec: 0 } : { sec: t.sec, nsec: 0 };
  if (rule === 'podman') return t.sec > goMax ? { sec: -(2 ** 31), nsec: 0 } : { sec: t.sec, nsec: 0 };
  if (rule === 'libarchive') {
    if (t.sec >= 0 && t.sec < 0x7fffffff) return { sec: t.sec, nsec: 0 };
    return paxDecimal(t.nsec === 0 ? String(t.sec) : `${t.sec}.${String(t.nsec).padStart(9, '0')}`);
  }
  // CPython's st_mtime is sec + nsec * 1e-9 in double precision; str() and JavaScript's String() print the same shortest digits.
  const f = t.sec + t.nsec * 1e-9;
  if (rule === 'python-float-trunc') return { sec: Math.trunc(f), nsec: 0 };
  return paxDecimal(String(f));
}

/** A PAX time record's decimal value, exactly, cut at nanoseconds. */
function paxDecimal(s: string): Time {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(s);
  if (!m) throw new Error(`unexpected time ${s}`);
  const whole = Number(m[2]);
  const nsec = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (m[1] !== '-') return { sec: whole, nsec };
  return nsec === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1e9 - nsec };
}

function expectedFor(p: Producer): Listing {
  const cannot = CANNOT[p];
  const rule = TIMES[p].rule;
  const drop = (k: string): boolean =>
    (k.startsWith('user.') && !!cannot['user-xattrs']) ||
    (k === 'security.capability' && !!cannot.capability) ||
    (k.startsWith('system.posix_acl_') && !!cannot.acls);
  const ls = layers().map((l) =>
    l
      .filter((e) => !(cannot['long-whiteout'] && isWhiteout(e) && (e.path.split('/').pop() ?? '').length > 255))
      .map(
        (e) =>
          ({
            ...e,
            meta: {
              ...e.meta,
              mtime: producerTime(e.meta.mtime, rule),
              xattrs: new Map([...e.meta.xattrs].filter(([k]) => !drop(k))),
            },
          }) as LayerEntry,
      ),
  );
  const want = listingFromModel(flattenModel(ls, EPOCH));
  // Where the holes are: every 4 KiB block that holds a byte other than zero, and no other.
  const model = flattenModel(layers(), EPOCH);
  for (const [path, n] of model.paths) {
    const row = want.get(`/${path}`);
    if (row && path.startsWith('holes/') && n.content) row.blocks = dataBlocks(n.content);
  }
  want.delete('/');
  return want;
}

function ranges(blocks: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < blocks.length;) {
    let j = i;
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j]! + 1) j++;
    out.push(i === j ? `${blocks[i]}` : `${blocks[i]}-${blocks[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

function dataBlocks(b: Buffer): string {
  const out: number[] = [];
  for (let i = 0; i * 4096 < b.length; i++) if (b.subarray(i * 4096, (i + 1) * 4096).some((x) => x !== 0)) out.push(i);
  return ranges(out);
}

/** The logical blocks an inode maps, from debugfs stat's EXTENTS list ("(0):1234, (128-129):5000-5001"). */
function mappedBlocks(img: string, ino: number): string {
  const s = debugfs(img, `stat <${ino}>`);
  const at = s.indexOf('EXTENTS:');
  const blocks: number[] = [];
  if (at >= 0) {
    for (const m of s.slice(at).matchAll(/\((\d+)(?:-(\d+))?\):/g)) {
      const a = Number(m[1]);
      const b = m[2] === undefined ? a : Number(m[2]);
      for (let i = a; i <= b; i++) blocks.push(i);
    }
  }
  return ranges(blocks.sort((x, y) => x - y));
}

// ---- images ----

async function decompressed(file: string, data: Buffer): Promise<Buffer> {
  if (file.endsWith('.gz')) return gunzipSync(data);
  if (file.endsWith('.zst'))
    return (await execa('zstd', ['-dc', file], { encoding: 'buffer', stripFinalNewline: false, maxBuffer: 1 << 30 }))
      .stdout as Buffer;
  return data;
}

/** A tar writer's layers as an oci-archive: index, manifest and config written here. */
async function assemble(cellDir: string, dest: string): Promise<void> {
  const files = (await readdir(cellDir)).filter((f) => /^layer\d+\.tar/.test(f)).sort();
  const blobs: Buffer[] = [];
  const diffIds: string[] = [];
  let mediaType = OCI_LAYER;
  for (const f of files) {
    const data = await readFile(join(cellDir, f));
    blobs.push(data);
    diffIds.push(sha256(await decompressed(join(cellDir, f), data)));
    mediaType = f.endsWith('.gz') ? OCI_LAYER_GZIP : f.endsWith('.zst') ? OCI_LAYER_ZSTD : OCI_LAYER;
  }
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: diffIds },
  });
  const img = buildImage({ layers: blobs, rawConfig: config, layerMediaType: mediaType });
  const dir = await mkdtemp(join(tmpdir(), 'img2vm-producers-oci-'));
  try {
    await writeLayout(dir, [{ top: img.manifest, tag: 'latest' }], imageBlobs(img));
    await writeFile(dest, await tarDirectory(dir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** img2vm's own entries in a --raw rootfs: lost+found and the fstab (with its directory, which the tree does not have). */
const IMG2VM_OWN = new Set(['/', '/lost+found', '/etc', '/etc/fstab']);

let work: string;
let built: string;
const results = new Map<string, Promise<CellResult>>();

function convert(c: Cell): Promise<CellResult> {
  let r = results.get(c.id);
  if (!r) {
    r = convertCell(c);
    results.set(c.id, r);
  }
  return r;
}

async function convertCell(c: Cell): Promise<CellResult> {
  const cellDir = join(built, 'cells', c.id);
  const dir = join(work, c.id);
  await mkdir(dir, { recursive: true });
  const files = await readdir(cellDir);
  let ref: string;
  if (files.includes('image.tar')) {
    ref =
      c.producer === 'docker' && c.compression === 'none'
        ? `docker-archive:${join(cellDir, 'image.tar')}`
        : `oci-archive:${join(cellDir, 'image.tar')}`;
  } else {
    await assemble(cellDir, join(dir, 'image.tar'));
    ref = `oci-archive:${join(dir, 'image.tar')}`;
  }
  const out = join(dir, 'root.ext4');
  const r = await img2vm([ref, '--format', 'rootfs', '-o', out, '--raw', '--seed', 'producers'], {
    env: { SOURCE_DATE_EPOCH: String(EPOCH.sec) },
  });
  const res: CellResult = { exitCode: r.exitCode ?? -1, output: r.all ?? '', diffs: [], fsck: '' };
  if (res.exitCode === 0) {
    const fsck = run('e2fsck', ['-fn', out]);
    res.fsck = fsck.status === 0 ? '' : fsck.out;
    const scratch = join(dir, 'dump');
    await mkdir(scratch, { recursive: true });
    const extra = new Set(EXTRA[c.producer]?.paths ?? []);
    const got = listingFromExt4(out, scratch, {
      ignore: (p) => IMG2VM_OWN.has(p) || extra.has(p),
      blocksOf: (p) => p.startsWith('/holes/'),
      extents: (ino) => mappedBlocks(out, ino),
    });
    res.diffs = diffListings(expectedFor(c.producer), got);
  }
  await rm(dir, { recursive: true, force: true });
  return res;
}

// ---- the matrix ----

function summary(r: CellResult): string {
  if (r.exitCode !== 0)
    return `refused (exit ${r.exitCode}): ${errorLine(r)
      .replace(/^img2vm: error: /, '')
      .slice(0, 90)}`;
  if (r.diffs.length === 0 && !r.fsck) return 'identical';
  // Differences by field, with the first paths of each.
  const parts: string[] = [];
  const byField = new Map<string, Difference[]>();
  for (const d of r.diffs) byField.set(d.what, [...(byField.get(d.what) ?? []), d]);
  for (const [what, ds] of byField)
    parts.push(
      `${what} ×${ds.length} (${ds
        .slice(0, 3)
        .map((d) => showPath(d.path))
        .join(', ')}${ds.length > 3 ? ', …' : ''})`,
    );
  if (r.fsck) parts.push('e2fsck finds errors');
  return parts.join('; ');
}

beforeAll(async () => {
  expect(
    process.getuid?.(),
    'the producer matrix materialises devices, owners and security xattrs: run it as root',
  ).toBe(0);
  await sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);
  work = await mkdtemp(join(tmpdir(), 'img2vm-producers-'));
  const spec = join(work, 'spec.json');
  await writeFile(spec, specJson(layers()));
  const b = await execa('bash', [join(REPO, 'fixtures', 'producers', 'build.sh'), spec], { reject: false, all: true });
  if (b.exitCode !== 0) throw new Error(`fixtures/producers/build.sh failed (${b.exitCode}):\n${b.all}`);
  built = b.stdout.trim().split('\n').at(-1)!;
  if (b.stderr.trim()) console.log(`built the producers' layers into ${built}:\n${b.stderr.trim()}`);
});

afterAll(async () => {
  const lines: string[] = [];
  const settled = await Promise.all(
    CELLS.map(
      async (c) =>
        [
          c,
          await results.get(c.id)?.catch((e: unknown) => ({ exitCode: -1, output: String(e), diffs: [], fsck: '' })),
        ] as const,
    ),
  );
  lines.push(
    '',
    'producer matrix (ext4 written by img2vm vs. the layer model minus what the producer cannot write)',
    '',
  );
  for (const [c, r] of settled) {
    if (!r) continue;
    lines.push(`${c.id.padEnd(28)} ${summary(r)}`);
  }
  lines.push('', 'differences, cell by cell:');
  for (const [c, r] of settled) {
    if (!r || r.diffs.length + (r.fsck ? 1 : 0) === 0) continue;
    lines.push(`  ${c.id}:`, ...r.diffs.slice(0, 40).map((d) => `    ${d.text}`));
    if (r.diffs.length > 40) lines.push(`    … and ${r.diffs.length - 40} more`);
    if (r.fsck)
      lines.push(
        ...r.fsck
          .split('\n')
          .slice(0, 20)
          .map((l) => `    e2fsck: ${l}`),
      );
  }
  lines.push('', 'cannot write (left out of the expected tree):');
  for (const p of Object.keys(PRODUCERS) as Producer[]) {
    const cannot = Object.entries(CANNOT[p]).map(([f, why]) => `${f} (${why})`);
    const t = TIMES[p].rule === 'exact' ? [] : [`nanoseconds: ${TIMES[p].rule} (${TIMES[p].why})`];
    const extra = EXTRA[p] ? [`adds ${EXTRA[p].paths.join(' ')} (${EXTRA[p].why})`] : [];
    if (cannot.length + t.length + extra.length > 0) lines.push(`  ${p}: ${[...cannot, ...t, ...extra].join('; ')}`);
  }
  console.log(lines.join('\n'));
  if (work) await rm(work, { recursive: true, force: true });
});

describe('producer matrix', () => {
  it('the expected tree is the model of the layers', () => {
    const want = expectedFor('go');
    expect(want.get('/gone/kept')?.kind).toBe('file');
    expect(want.has('/gone/file')).toBe(false);
    expect([...want.keys()].filter((p) => p.startsWith('/opq/'))).toEqual(['/opq/new']);
    expect(want.get('/links/sub/hard2')?.group).toBe('/links/sub/hard2');
    // Every file of the ladder has content: one cut into a directory cannot pass for it.
    expect(
      LADDER.every(
        (k) => want.get(`/ladder/${'p'.repeat(k - 8)}/${'L'.repeat(266 - k)}`)?.size === `long ${k}\n`.length,
      ),
    ).toBe(true);
  });

  for (const c of CELLS) {
    const how = PRODUCERS[c.producer];
    it(`${c.id}: ${how.how}${c.compression === 'zstd' && how.zstdBy ? ', zstd by zstd(1)' : ''} → the tree, e2fsck clean`, async () => {
      const r = await convert(c);
      expect(r.exitCode, r.output).toBe(0);
      expect(r.diffs.map((d) => d.text).join('\n')).toBe('');
      expect(r.fsck).toBe('');
    });
  }
});
