// Randomised round trips: seeded layer stacks (whiteouts, opaque directories, replacements, hostile names, hard links) flattened by img2vm and by an independent model of the OCI layer rules must agree.
//
// Reproduce one seed with IMG2VM_LAYER_SEED=N (it also prints that seed's layers); run more with
// IMG2VM_LAYER_SEEDS=count.
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { LayerFlattener } from '../../src/rootfs/layers.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import type { ContentStore, DirNode, Node } from '../../src/rootfs/tree.js';
import { expectClean, tmp, writeImage } from '../disk/ext4/helpers.js';
import {
  diffListings,
  listingFromExt4,
  listingFromModel,
  sha256,
  showPath,
  xattrText,
  type Listing,
  type Row,
} from '../model/listing.js';
import { flattenModel, ModelRejects, type LayerEntry, type Meta, type Time } from '../model/oci-layers.js';
import { layerTar, type Encoding } from '../model/tar-writer.js';

const EPOCH: Time = { sec: 1_600_000_000, nsec: 0 };
const ONE = process.env.IMG2VM_LAYER_SEED;
/** 400 stacks flatten in a few seconds on the CI machines (2 shared cores). */
const SEEDS =
  ONE !== undefined
    ? [Number(ONE)]
    : Array.from({ length: Number(process.env.IMG2VM_LAYER_SEEDS ?? 400) }, (_, i) => i + 1);
/** Stacks also written as ext4 and read back with debugfs (a fraction of a second each); seeds whose trees are among the largest. */
const EXT4_SEEDS = ONE !== undefined ? [Number(ONE)] : [11, 34, 44, 69, 78];

/** mulberry32: small, seeded, good enough to pick test cases. */
function prng(seed: number) {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    int,
    chance: (p: number): boolean => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    bytes: (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256))),
  };
}
type Rng = ReturnType<typeof prng>;

/** Few names, so that layers collide often; some not UTF-8, some that sort before '.wh.'. */
const NAMES = ['a', 'b', 'c', 'd', '-e', 'f g', '\xc3\xa9t\xc3\xa9', '\xff\xfe', 'wh'];

function relPath(r: Rng, known: string[]): string {
  if (known.length > 0 && r.chance(0.5)) return r.pick(known);
  const n = 1 + r.int(3);
  return Array.from({ length: n }, () => r.pick(NAMES)).join('/');
}

/** A path as a hostile or sloppy layer might spell it. */
function spell(r: Rng, rel: string): string {
  const parts = rel.split('/');
  if (r.chance(0.05)) parts.splice(r.int(parts.length), 0, '..');
  if (r.chance(0.05)) parts.splice(r.int(parts.length), 0, '.');
  if (r.chance(0.03)) parts.splice(r.int(parts.length), 0, '');
  const p = parts.join('/');
  const lead = r.int(100);
  return lead < 30 ? `./${p}` : lead < 40 ? `/${p}` : lead < 45 ? `../${p}` : lead < 47 ? `../../${p}` : p;
}

function time(r: Rng): Time {
  const sec = r.pick([0, 1_700_000_000, -1_000_000_000, -1, 2 ** 31 + 12345, 2 ** 33 - 7, 86_400 * 365]) + r.int(1000);
  return { sec, nsec: r.chance(0.5) ? r.int(1_000_000_000) : 0 };
}

function meta(r: Rng, kind: string): Meta {
  const id = (): number => (r.chance(0.8) ? r.int(5) : r.pick([1000, 65534, 3_000_000, 0xfffffffe]));
  const xattrs = new Map<string, Buffer>();
  if ((kind === 'file' || kind === 'dir') && r.chance(0.12)) xattrs.set(`user.k${r.int(3)}`, r.bytes(r.int(20)));
  return { mode: r.int(0o10000), uid: id(), gid: id(), mtime: time(r), xattrs };
}

function content(r: Rng): Buffer {
  const b = Buffer.alloc(r.chance(0.3) ? 0 : r.chance(0.8) ? r.int(300) : r.int(20_000));
  // Runs of zeros, as holes in the middle and at the end of a file.
  for (let i = 0; i < b.length; i += 4096) if (r.chance(0.7)) r.bytes(Math.min(4096, b.length - i)).copy(b, i);
  return b;
}

interface Stack {
  layers: LayerEntry[][];
  tars: Buffer[];
}

function generate(seed: number): Stack {
  const r = prng(seed);
  const known: string[] = [];
  const layers: LayerEntry[][] = [];
  const nLayers = 1 + r.int(4);
  for (let l = 0; l < nLayers; l++) {
    const entries: LayerEntry[] = [];
    const n = 1 + r.int(25);
    for (let i = 0; i < n; i++) {
      const k = r.int(100);
      const rel = relPath(r, known);
      let e: LayerEntry;
      if (k < 28) e = { type: 'file', path: spell(r, rel), meta: meta(r, 'file'), content: content(r) };
      else if (k < 48) e = { type: 'dir', path: spell(r, rel), meta: meta(r, 'dir') };
      else if (k < 58) {
        // Mostly within the tree, some absolute, some climbing out, a few empty (skipped).
        const t = r.chance(0.03)
          ? ''
          : r.chance(0.3)
            ? `/${relPath(r, known)}`
            : r.chance(0.2)
              ? `../${r.pick(NAMES)}`
              : relPath(r, known).split('/').pop()!;
        e = { type: 'symlink', path: spell(r, rel), meta: meta(r, 'symlink'), target: t };
      } else if (k < 68)
        e = { type: 'link', path: spell(r, rel), meta: meta(r, 'link'), target: spell(r, relPath(r, known)) };
      else if (k < 82) {
        // A whiteout of a known path (or of '..', '.', ''), spelled as its parent plus .wh.NAME.
        const parts = rel.split('/');
        const name = r.chance(0.03) ? r.pick(['', '.', '..']) : parts.pop()!;
        e = {
          type: 'file',
          path: spell(r, [...parts, `.wh.${name}`].join('/')),
          meta: meta(r, 'file'),
          content: Buffer.alloc(0),
        };
      } else if (k < 88) {
        const parts = rel.split('/');
        if (r.chance(0.5)) parts.pop();
        e = {
          type: 'file',
          path: spell(r, [...parts, '.wh..wh..opq'].join('/')),
          meta: meta(r, 'file'),
          content: Buffer.alloc(0),
        };
      } else if (k < 90) {
        // aufs metadata: never content.
        e = {
          type: 'file',
          path: `.wh..wh.plnk/${r.int(100)}.${r.int(100)}`,
          meta: meta(r, 'file'),
          content: r.bytes(3),
        };
      } else if (k < 95) e = { type: 'fifo', path: spell(r, rel), meta: meta(r, 'fifo') };
      else
        e = {
          type: r.chance(0.5) ? 'char' : 'block',
          path: spell(r, rel),
          meta: meta(r, 'dev'),
          major: r.int(4096),
          minor: r.int(1 << 20),
        };
      entries.push(e);
      if (!rel.includes('.wh.') && !known.includes(rel)) known.push(rel);
    }
    layers.push(entries);
  }
  const tars = layers.map((entries) =>
    layerTar(entries, () => ({ encoding: r.pick<Encoding>(['ustar', 'pax', 'gnu']), dirSlash: r.chance(0.7) })),
  );
  return { layers, tars };
}

/** Cases every full run must exercise. */
const RULES = [
  'whiteout removed entries',
  'opaque whiteout removed entries',
  'whiteout kept what its own layer wrote',
  'hard link made',
  'hard link to a whited-out file skipped',
  'directory replaced by a non-directory',
  'non-directory replaced by a directory',
  'symlinked parent followed',
  'directory made where a symlink points',
  "'..' at the root",
  'entry below a non-directory skipped',
];

type Outcome = { rejected: true; why: string } | { rejected: false; listing: Listing };

function modelOutcome(s: Stack, counts?: Map<string, number>): Outcome {
  try {
    return { rejected: false, listing: listingFromModel(flattenModel(s.layers, EPOCH, counts)) };
  } catch (e) {
    if (e instanceof ModelRejects) return { rejected: true, why: e.message };
    throw e;
  }
}

async function treeListing(root: DirNode): Promise<Listing> {
  const out: Listing = new Map();
  const byNode = new Map<Node, string[]>();
  const visit = async (n: Node, path: string): Promise<void> => {
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
      const parts: Buffer[] = [];
      for await (const c of n.data.store.read(n.data)) parts.push(c);
      row.size = n.size;
      row.sha256 = sha256(Buffer.concat(parts));
    }
    if (n.kind === 'symlink') row.target = n.target;
    if (n.kind === 'char' || n.kind === 'block') row.device = `${n.major}:${n.minor}`;
    out.set(path, row);
    if (n.kind === 'dir')
      for (const [name, c] of n.entries) await visit(c, path === '/' ? `/${name}` : `${path}/${name}`);
    else byNode.set(n, [...(byNode.get(n) ?? []), path]);
  };
  await visit(root, '/');
  for (const paths of byNode.values())
    if (paths.length > 1) for (const p of paths) out.get(p)!.group = [...paths].sort()[0]!;
  return out;
}

async function flatten(
  s: Stack,
  store: ContentStore,
): Promise<{ rejected: true; why: string } | { rejected: false; root: DirNode }> {
  const f = new LayerFlattener({ store, epoch: EPOCH });
  try {
    for (const t of s.tars) await f.applyLayer(Readable.from([t]));
    return { rejected: false, root: f.finish().root };
  } catch (e) {
    if (e instanceof Img2vmError && e.kind === 'badImage') return { rejected: true, why: e.message };
    throw e;
  }
}

function describeStack(s: Stack): string {
  return s.layers
    .map((l, i) =>
      [
        `layer ${i + 1}:`,
        ...l.map(
          (e) =>
            `  ${e.type} ${JSON.stringify(showPath(e.path))}${'target' in e ? ` -> ${JSON.stringify(showPath(e.target))}` : ''} mode ${e.meta.mode.toString(8)} ${e.meta.uid}:${e.meta.gid}`,
        ),
      ].join('\n'),
    )
    .join('\n');
}

function compare(
  seed: number,
  s: Stack,
  want: Outcome,
  got: { rejected: true; why: string } | { rejected: false; listing: Listing },
): string | undefined {
  const again = `reproduce: IMG2VM_LAYER_SEED=${seed} npx vitest run test/rootfs/random-layers.tools.test.ts`;
  if (want.rejected !== got.rejected) {
    return `seed ${seed}: the model ${want.rejected ? `rejects the image (${want.why})` : 'accepts the image'}, img2vm ${got.rejected ? `rejects it (${got.why})` : 'accepts it'}\n${again}`;
  }
  if (want.rejected || got.rejected) return undefined;
  const d = diffListings(want.listing, got.listing);
  if (d.length === 0) return undefined;
  return `seed ${seed}: ${d.length} differences (want = model, got = img2vm)\n${d
    .slice(0, 20)
    .map((x) => `  ${x.text}`)
    .join('\n')}\n${again}`;
}

describe('random layer stacks against the OCI layer model', () => {
  const t = tmp();
  afterAll(() => t.done());

  it(`${SEEDS.length} seeded stacks flatten as the model says`, async () => {
    const failures: string[] = [];
    const counts = new Map<string, number>();
    let rejected = 0;
    for (const seed of SEEDS) {
      const s = generate(seed);
      if (ONE !== undefined) console.log(describeStack(s));
      const want = modelOutcome(s, counts);
      const res = await flatten(s, new MemoryStore());
      const got = res.rejected ? res : { rejected: false as const, listing: await treeListing(res.root) };
      if (want.rejected && got.rejected) rejected++;
      const f = compare(seed, s, want, got);
      if (f) failures.push(f);
    }
    console.log(
      `random layer stacks: ${SEEDS.length} seeds, ${rejected} rejected by both (symlink loops), ${failures.length} disagreements; rules exercised:`,
    );
    console.log(
      [...counts]
        .sort()
        .map(([k, v]) => `  ${k}: ${v}`)
        .join('\n'),
    );
    // A generator that stopped making these cases would leave the comparison toothless.
    if (ONE === undefined) for (const rule of RULES) expect(counts.get(rule) ?? 0, rule).toBeGreaterThan(0);
    expect(failures.slice(0, 5).join('\n\n'), `${failures.length} of ${SEEDS.length} seeds disagree`).toBe('');
  });

  it(`${EXT4_SEEDS.length} stacks written as ext4 read back as the model says`, async () => {
    const failures: string[] = [];
    for (const seed of EXT4_SEEDS) {
      const s = generate(seed);
      const want = modelOutcome(s);
      if (ONE === undefined)
        expect(want.rejected ? 0 : want.listing.size, `seed ${seed} is a tree worth writing`).toBeGreaterThan(20);
      const img = t.path(`seed-${seed}.ext4`);
      let res: Awaited<ReturnType<typeof flatten>> | undefined;
      await writeImage(img, async (w) => {
        res = await flatten(s, w);
        return res.rejected
          ? { kind: 'dir', meta: { mode: 0o755, uid: 0, gid: 0, mtime: EPOCH, xattrs: new Map() }, entries: new Map() }
          : res.root;
      });
      expectClean(img);
      const got = res!.rejected
        ? res!
        : { rejected: false as const, listing: listingFromExt4(img, t.dir, { ignore: (p) => p === '/lost+found' }) };
      const f = compare(seed, s, want, got);
      if (f) failures.push(f);
    }
    expect(failures.join('\n\n')).toBe('');
  });
});
