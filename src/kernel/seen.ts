// What img2vm has seen of the Debian archive, across runs and mirrors: the newest signed Release date of each suite and the newest kernel of each suite set, so that no mirror or proxy can roll either back.
//
// Debian's main suites carry no Valid-Until, so a correctly signed InRelease of months ago is still "valid"
// to gpgv; an on-path attacker (plain-http mirror) or a stale mirror can serve one to hide a fixed kernel.
// apt defends by never replacing its stored Release by an older one (per source); img2vm keeps the newest
// Date per codename in <cache>/kernels/seen.json whatever the mirror, so switching mirrors does not reset
// it. The file outlives `cache prune` on purpose: it is a memory of signed facts, not a cached kernel.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { writeRecord } from '../store/index.js';
import { suiteSources } from './archive.js';
import type { KernelCache } from './cache.js';
import { compareDebVersions } from './debversion.js';

const SeenSchema = z.object({
  format: z.literal(1),
  /** Codename → the newest Date of its signed Release seen, and the archive root it came from. */
  releases: z.record(z.string(), z.object({ date: z.string(), at: z.string() })),
  /** Suite set key (suiteSetKey) → the newest kernel package resolved from it. */
  kernels: z.record(
    z.string(),
    z.object({ package: z.string(), version: z.string(), at: z.string(), seenAt: z.string() }),
  ),
});

export type Seen = z.infer<typeof SeenSchema>;

export interface SeenRelease {
  codename: string;
  date: Date;
  /** The archive root it was fetched from. */
  at: string;
}

export interface SeenKernel {
  set: string;
  package: string;
  version: string;
  at: string;
  seenAt: Date;
}

const empty = (): Seen => ({ format: 1, releases: {}, kernels: {} });

/** The suites a fetch asks for, as one key: a kernel is compared only with kernels of the same set (and arch). */
export function suiteSetKey(arch: string, suites: string[]): string {
  return `${arch}:${suites.join(',')}`;
}

function describeSet(set: string): string {
  const [arch, suites] = [set.slice(0, set.indexOf(':')), set.slice(set.indexOf(':') + 1)];
  return `${suites.split(',').join(', ')} (${arch})`;
}

const seenPath = (cache: KernelCache): string => join(cache.root, 'seen.json');

async function readFileRecord(cache: KernelCache): Promise<Seen> {
  try {
    const r = SeenSchema.safeParse(JSON.parse(await readFile(seenPath(cache), 'utf8')));
    return r.success ? r.data : empty();
  } catch {
    return empty();
  }
}

function mergeRelease(s: Seen, r: { codename: string; date: string; at: string }): void {
  const had = s.releases[r.codename];
  if (!had || Date.parse(r.date) > Date.parse(had.date)) s.releases[r.codename] = { date: r.date, at: r.at };
}

function mergeKernel(s: Seen, set: string, k: Seen['kernels'][string]): void {
  const had = s.kernels[set];
  if (!had || compareDebVersions(k.version, had.version) > 0) s.kernels[set] = k;
}

/**
 * The memory, folded with the index records of every mirror (a cache made before seen.json existed still
 * remembers what it fetched).
 */
export async function readSeen(cache: KernelCache): Promise<Seen> {
  const s = await readFileRecord(cache);
  for (const name of await readdir(cache.index).catch(() => [] as string[])) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const idx = await cache.readIndex(name.slice(0, -'.json'.length));
    if (!idx) continue;
    for (const [suite, date] of Object.entries(idx.releases)) {
      mergeRelease(s, {
        codename: suite,
        date,
        at: suite.endsWith('-security') && idx.securityMirror ? idx.securityMirror : idx.mirror,
      });
    }
    const set = suiteSetKey(
      idx.arch,
      suiteSources(idx.suite, idx.mirror, idx.securityMirror).map((x) => x.suite),
    );
    mergeKernel(s, set, {
      package: `the kernel of ${idx.suite}`,
      version: idx.packageVersion,
      at: idx.mirror,
      seenAt: idx.checkedAt,
    });
  }
  return s;
}

/** Adds what a fetch saw, keeping the newest of each; under a lock and by rename, so concurrent runs lose nothing. */
export async function recordSeen(
  cache: KernelCache,
  facts: { releases?: SeenRelease[]; kernel?: SeenKernel },
  signal?: AbortSignal,
): Promise<void> {
  const lock = await cache.lockSeen({ signal });
  try {
    const s = await readFileRecord(cache);
    for (const r of facts.releases ?? [])
      mergeRelease(s, { codename: r.codename, date: r.date.toISOString(), at: r.at });
    if (facts.kernel) {
      const k = facts.kernel;
      mergeKernel(s, k.set, { package: k.package, version: k.version, at: k.at, seenAt: k.seenAt.toISOString() });
    }
    await writeRecord(seenPath(cache), `${JSON.stringify(s, null, 2)}\n`);
  } finally {
    await lock.release();
  }
}

/** Refuses a signed Release older than one seen before for the same codename, from any mirror. */
export function checkReleaseDates(seen: Seen, releases: SeenRelease[]): void {
  for (const r of releases) {
    const had = seen.releases[r.codename];
    if (!had || r.date.getTime() >= Date.parse(had.date)) continue;
    throw new Img2vmError(
      'badImage',
      `InRelease of ${r.codename} at ${r.at} is dated ${r.date.toISOString()}, older than one already seen (${new Date(had.date).toISOString()}, at ${had.at})`,
      'a mirror or proxy is replaying an old index (or this mirror lags behind the one seen before): use another mirror, over https where you can ' +
        '(--kernel-mirror https://deb.debian.org/debian), or try again once this mirror has caught up (nothing was cached)',
    );
  }
}

/** Refuses a kernel older than the newest one seen for the same suite set: a suite that had the newer one is being withheld. */
export function checkKernelVersion(seen: Seen, k: Omit<SeenKernel, 'seenAt'>): void {
  const had = seen.kernels[k.set];
  if (!had || compareDebVersions(k.version, had.version) >= 0) return;
  const where = describeSet(k.set);
  throw new Img2vmError(
    'badImage',
    `the newest kernel in ${where} at ${k.at} is ${k.package} ${k.version}, older than ${had.package} ${had.version} already seen for ${where} (at ${had.at}, ${had.seenAt})`,
    'a mirror or proxy is withholding a suite or serving an old one: use another mirror, over https where you can (--kernel-mirror https://deb.debian.org/debian); ' +
      'to boot that older kernel on purpose, download its .deb and pass it with --kernel ./linux-image-….deb (nothing was cached)',
  );
}

/** Whether a cached answer names a kernel older than one seen since (through any mirror): then it is not fresh. */
export function olderThanSeen(seen: Seen, set: string, version: string): boolean {
  const had = seen.kernels[set];
  return !!had && compareDebVersions(version, had.version) < 0;
}
