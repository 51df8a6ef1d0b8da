// The part of the cache img2vm keeps itself, the store: each entry listed with what it is, and removed only when no running img2vm holds or may take it.
import { BuildCache } from '../build/build-cache.js';
import { KernelCache } from '../kernel/cache.js';
import { DiskStore, type Kind, type Store, type StoreEntry } from '../store/index.js';
import { isoOf, type CacheEntry, type CacheKind, type Removable, type RemoveOutcome } from './entries.js';

const KIND: Record<Kind, CacheKind> = {
  build: 'guest-build',
  blob: 'registry-blob',
  kernel: 'kernel',
  disk: 'converted-disk',
};

/** What a live writer of each kind is doing, for the reason prune gives when it leaves the kind alone. */
const WRITING: Record<Kind, string> = {
  build: 'a guest build',
  blob: 'a pull',
  kernel: 'a kernel fetch',
  disk: 'a conversion',
};

/** Why prune must leave an entry alone now, or null. */
function busy(kind: Kind, s: { holders: number[]; writers: number[] }): string | null {
  if (s.holders.length) return `in use by img2vm process ${s.holders.join(', ')}`;
  if (s.writers.length) return `${WRITING[kind]} is under way (img2vm process ${s.writers.join(', ')})`;
  return null;
}

/** The name a user recognises and a short description, read from the entry's record without taking it. */
async function describe(store: Store, e: StoreEntry): Promise<{ name: string; detail: string }> {
  switch (e.kind) {
    case 'blob':
      return { name: e.key, detail: 'a layer, manifest or config pulled from a registry' };
    case 'build': {
      const found = await new BuildCache(store).find(e.key);
      const detail = found
        ? `${found.record.label} (template ${found.record.template}, base ${found.record.base.slice(7, 19)})`
        : 'incomplete (an interrupted build or removal)';
      return { name: `runc:${e.key.slice(0, 32)}`, detail };
    }
    case 'kernel': {
      const record = await new KernelCache(store).readTree(e.key, { verify: false });
      return record
        ? { name: record.version, detail: record.origin }
        : { name: e.key, detail: 'incomplete (an interrupted unpacking or removal)' };
    }
    case 'disk': {
      const r = await new DiskStore(store).find(e.key);
      if (!r) return { name: `disk:${e.key}`, detail: 'incomplete (an interrupted copy or removal)' };
      const f = r.fields;
      const img = f.image.manifest ?? f.image.config;
      return {
        name: `disk:${e.key}`,
        detail: `${f.options.format} of ${img.slice(0, 19)} (${f.image.platform}), --init ${f.guest.strategy}${f.kernel ? `, kernel ${f.kernel.slice(0, 19)}` : ''}`,
      };
    }
  }
}

/** Every entry of the store, each with how to remove it safely. */
export async function storeEntries(store: Store): Promise<Removable[]> {
  const out: Removable[] = [];
  for (const e of await store.entries()) {
    const entry: CacheEntry = {
      kind: KIND[e.kind],
      store: 'img2vm',
      ...(await describe(store, e)),
      bytes: e.bytes,
      lastUsed: isoOf(e.lastUsed),
      busy: busy(e.kind, e),
      location: e.path,
    };
    out.push({
      entry,
      async remove(): Promise<RemoveOutcome> {
        const why = busy(e.kind, await store.status(e.kind, e.key));
        if (why) return { removed: false, why };
        await store.discard(e.kind, e.key);
        return { removed: true, freed: e.bytes };
      },
    });
  }
  return out;
}
