// `img2vm cache`: the inventory of everything img2vm caches, and pruning what has not been used for a while.
import { cacheDir } from '../core/paths.js';
import { Img2vmError } from '../core/errors.js';
import { BuildCache, buildCheck } from '../build/build-cache.js';
import { KernelCache, TREE_CHECK } from '../kernel/cache.js';
import { BlobCache, blobCheck } from '../source/blob-cache.js';
import { hashWatch } from '../source/digest.js';
import { openStore, type Check, type Kind } from '../store/index.js';
import type { CacheEntry, Inventory, Removable, RemoveOutcome } from './entries.js';
import { dockerImages, podmanImages } from './images.js';
import { storeEntries } from './local.js';

export type { CacheEntry, CacheKind, CacheStore } from './entries.js';

/** What prune removes when given no age: entries unused for this long. */
export const DEFAULT_PRUNE_AGE = '30d';

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86400_000, w: 7 * 86400_000 };

/** "30d", "12h", "90m", "45s", "2w" → milliseconds. */
export function parseAge(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$/i.exec(text);
  if (!m)
    throw new Img2vmError(
      'usage',
      `--older-than ${text} is not an age`,
      'give a number and a unit: s, m, h, d or w (e.g. 7d, 12h)',
    );
  return Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
}

export interface CacheLocations {
  /** img2vm's cache directory (default ~/.cache/img2vm, or $XDG_CACHE_HOME/img2vm). */
  root: string;
  /** Whether to ask docker and podman about their images (tests of the directories alone turn it off). */
  imageStores: boolean;
}

export function defaultLocations(env: NodeJS.ProcessEnv = process.env): CacheLocations {
  return { root: cacheDir(env), imageStores: true };
}

export async function inventory(loc: CacheLocations = defaultLocations()): Promise<Inventory> {
  const notes: string[] = [];
  const store = openStore(loc.root);
  const items = [
    ...(await storeEntries(store)),
    ...(loc.imageStores ? await dockerImages(notes) : []),
    ...(loc.imageStores ? await podmanImages(new BuildCache(store), notes) : []),
  ];
  return { items, notes };
}

export interface PruneOptions {
  all?: boolean;
  /** Milliseconds; default DEFAULT_PRUNE_AGE. */
  olderThan?: number;
  now?: number;
}

export interface PruneRecord {
  entry: CacheEntry;
  /** What happened: removed (with bytes freed, a note), or kept and why. */
  outcome: RemoveOutcome;
}

export interface PruneReport {
  removed: PruneRecord[];
  /** Entries old enough that were kept anyway (in use, or their store refused). */
  kept: PruneRecord[];
  freed: number;
  notes: string[];
}

/** Whether prune would take an entry: --all takes everything, else what was last used before now - age. */
export function isStale(e: CacheEntry, o: PruneOptions): boolean {
  if (o.all) return true;
  const age = o.olderThan ?? parseAge(DEFAULT_PRUNE_AGE);
  return Date.parse(e.lastUsed) < (o.now ?? Date.now()) - age;
}

/** Removes stale entries, never one a running img2vm holds, then what pointed at them (tag records, kernel index). */
export async function prune(o: PruneOptions, loc: CacheLocations = defaultLocations()): Promise<PruneReport> {
  const inv = await inventory(loc);
  return removeItems(
    inv.items.filter((i) => isStale(i.entry, o)),
    inv.notes,
    loc,
  );
}

/**
 * The entries `cache rm NAME...` means: an entry whose name is NAME, else the one entry whose name starts with it
 * (a key's first hex digits, as docker takes an image id's). A name that matches none or several is refused whole.
 */
export function selectByName<T extends { entry: CacheEntry }>(items: T[], names: string[]): T[] {
  const chosen = new Set<T>();
  for (const name of names) {
    const exact = items.filter((i) => i.entry.name === name);
    const matches = exact.length ? exact : items.filter((i) => name.length > 0 && i.entry.name.startsWith(name));
    if (matches.length === 0)
      throw new Img2vmError('usage', `no cached entry is named ${name}`, 'see the names with: img2vm cache ls');
    if (matches.length > 1)
      throw new Img2vmError(
        'usage',
        `${name} names ${matches.length} cached entries (${matches
          .slice(0, 3)
          .map((i) => i.entry.name)
          .join(', ')}${matches.length > 3 ? ', …' : ''})`,
        'give more of the name (img2vm cache ls shows them whole)',
      );
    chosen.add(matches[0]!);
  }
  return [...chosen];
}

/** Removes the named entries (never one a running img2vm holds), then what pointed at them. */
export async function removeNamed(names: string[], loc: CacheLocations = defaultLocations()): Promise<PruneReport> {
  const inv = await inventory(loc);
  return removeItems(selectByName(inv.items, names), inv.notes, loc);
}

async function removeItems(items: Removable[], notes: string[], loc: CacheLocations): Promise<PruneReport> {
  const report: PruneReport = { removed: [], kept: [], freed: 0, notes };
  // Guest builds first: an image store refuses to drop a source image a build still stands on.
  const order = ['guest-build', 'source-image', 'converted-disk', 'registry-blob', 'kernel'];
  const sorted = [...items].sort((a, b) => order.indexOf(a.entry.kind) - order.indexOf(b.entry.kind));
  for (const item of sorted) {
    if (item.entry.busy) {
      report.kept.push({ entry: item.entry, outcome: { removed: false, why: item.entry.busy } });
      continue;
    }
    let outcome: RemoveOutcome;
    try {
      outcome = await item.remove();
    } catch (e) {
      outcome = { removed: false, why: (e as Error).message };
    }
    (outcome.removed ? report.removed : report.kept).push({ entry: item.entry, outcome });
    if (outcome.removed) report.freed += outcome.freed;
  }
  const store = openStore(loc.root);
  await new BlobCache(store).dropDanglingRefs();
  await new KernelCache(store).dropDanglingIndex();
  await store.sweep();
  return report;
}

export interface VerifyReport {
  /** Entries checked, and the bytes hashed to check them. */
  checked: number;
  hashedBytes: number;
  /** Entries whose bytes no longer match their key or record: removed, so the next run fetches or makes them again. */
  damaged: { kind: Kind; key: string; path: string }[];
}

/** How each kind is checked through and through (a converted disk is not kept yet). */
const DEEP_CHECK: Partial<Record<Kind, (key: string) => Check>> = {
  blob: (key) => blobCheck(key),
  kernel: () => TREE_CHECK,
  build: buildCheck,
};

/**
 * Checks every entry of the store as if it were entering it again (a blob's bytes against its digest, a kernel
 * tree against its record); a damaged entry is removed. Runs go on trusting what entered the store verified.
 */
export async function verifyStore(loc: CacheLocations = defaultLocations()): Promise<VerifyReport> {
  const store = openStore(loc.root, { verify: 'read' });
  const report: VerifyReport = { checked: 0, hashedBytes: 0, damaged: [] };
  const before = hashWatch.onBytes;
  hashWatch.onBytes = (n) => {
    report.hashedBytes += n;
    before?.(n);
  };
  try {
    for (const e of await store.entries()) {
      const check = DEEP_CHECK[e.kind]?.(e.key);
      if (!check) continue;
      report.checked++;
      if (!(await store.verify(e.kind, e.key, check))) report.damaged.push({ kind: e.kind, key: e.key, path: e.path });
    }
  } finally {
    hashWatch.onBytes = before;
  }
  return report;
}
