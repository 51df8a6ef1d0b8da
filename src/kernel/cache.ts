// Kernel trees in the store (kind kernel), and beside them the index records with a TTL and the memory of what was seen.
//
// <cache>/kernels/trees/sha256-<deb sha256>/   one unpacked kernel package (from the archive or a local .deb)
// <cache>/kernels/trees/image-<config hex>/   the kernel of one container image
//     kernel.json  boot/vmlinuz-V  boot/config-V  lib/modules/V/...
// <cache>/kernels/index/<key>.json           which tree a mirror + suite resolved to, and when
// <cache>/kernels/seen.json                  the newest Release dates and kernels seen (seen.ts); outlives prune
// <cache>/locks/kernel.index-<key>.lock      held while one process asks the archive for that key (kernel.seen.lock: seen.json)
import { lstat, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { HeldLock, LockOptions } from '../core/lock.js';
import type { Scope } from '../core/scope.js';
import { LAYOUT, writeRecord, type Check, type KernelKey, type Store } from '../store/index.js';

export const TreeSourceSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('debian-archive'),
    suite: z.string(),
    from: z.string(),
    package: z.string(),
    packageVersion: z.string(),
    url: z.string(),
    sha256: z.string(),
    size: z.number(),
  }),
  z.object({ kind: z.literal('deb'), path: z.string(), sha256: z.string(), size: z.number() }),
  z.object({ kind: z.literal('image'), ref: z.string(), imageId: z.string() }),
]);

export const TreeRecordSchema = z.object({
  format: z.literal(1),
  id: z.string(),
  version: z.string(),
  vmlinuz: z.string(),
  config: z.string().optional(),
  modulesDir: z.string().optional(),
  origin: z.string(),
  createdAt: z.string(),
  depmod: z.boolean(),
  source: TreeSourceSchema,
  /** Apparent bytes of the tree and how many files it has, for `cache ls`. */
  bytes: z.number(),
  files: z.number(),
});

export type TreeRecord = z.infer<typeof TreeRecordSchema>;

export const IndexRecordSchema = z.object({
  format: z.literal(1),
  mirror: z.string(),
  securityMirror: z.string().nullable(),
  suite: z.string(),
  arch: z.string(),
  tree: z.string(),
  packageVersion: z.string(),
  /** When the archive was last asked (ISO); the record is fresh for the TTL after that. */
  checkedAt: z.string(),
  /** Date of each suite's Release when checked, to notice a mirror going back in time. */
  releases: z.record(z.string(), z.string()),
});

export type IndexRecord = z.infer<typeof IndexRecordSchema>;

/** A tree is whole when its record parses and its kernel image is there, intact when it still has the files and bytes its record counted. */
export const TREE_CHECK: Check = {
  whole: async (dir) => !!(await readRecord(dir)),
  intact: async (dir) => {
    const r = await readRecord(dir);
    const size = r && (await treeSize(dir, ['kernel.json']));
    return !!size && size.bytes === r.bytes && size.files === r.files;
  },
};

/** A tree's record, if it parses and the kernel image it names is a file. */
async function readRecord(dir: string): Promise<TreeRecord | undefined> {
  try {
    const r = TreeRecordSchema.safeParse(JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')));
    if (!r.success) return undefined;
    return (await lstat(join(dir, r.data.vmlinuz))).isFile() ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** The kernels of the store (kind kernel), with their index records and the memory of what was seen (seen.ts) beside. */
export class KernelCache {
  /** <root>/kernels: index/ and seen.json; the trees themselves are the store's (kernels/trees/). */
  readonly root: string;
  readonly index: string;

  constructor(readonly store: Store) {
    this.root = join(store.root, 'kernels');
    this.index = join(this.root, 'index');
  }

  treeDir(name: string): string {
    return this.store.path('kernel', key(name));
  }

  /**
   * A tree's record, if the tree is complete and its record readable. With verify (for use, not for listing) the
   * tree must still hold the files and bytes its record counted; a damaged tree is removed, so it is fetched again.
   */
  async readTree(name: string, o: { verify?: boolean } = {}): Promise<TreeRecord | undefined> {
    // An index record names its tree: a name that is not a key (a damaged record) names nothing.
    if (!LAYOUT.kernel.key(name)) return undefined;
    if (o.verify !== false && !(await this.store.verify('kernel', key(name), TREE_CHECK))) return undefined;
    return readRecord(this.treeDir(name));
  }

  /** A tree for this run: held until the scope closes (prune leaves it alone), its use recorded, verified. */
  async take(name: string, scope: Scope): Promise<TreeRecord | undefined> {
    if (!LAYOUT.kernel.key(name)) return undefined;
    await this.store.hold('kernel', key(name), scope);
    return this.readTree(name);
  }

  /** Every tree with a readable record, unverified (for choosing among them, not for use). */
  async allTrees(): Promise<{ name: string; record: TreeRecord }[]> {
    const out: { name: string; record: TreeRecord }[] = [];
    for (const e of await readdir(this.store.dir('kernel')).catch(() => [] as string[])) {
      const name = LAYOUT.kernel.key(e);
      const record = name && (await readRecord(this.treeDir(name)));
      if (name && record) out.push({ name, record });
    }
    return out;
  }

  async readIndex(key: string): Promise<IndexRecord | undefined> {
    try {
      const r = IndexRecordSchema.safeParse(JSON.parse(await readFile(join(this.index, `${key}.json`), 'utf8')));
      return r.success ? r.data : undefined;
    } catch {
      return undefined;
    }
  }

  async writeIndex(key: string, rec: IndexRecord): Promise<void> {
    await writeRecord(join(this.index, `${key}.json`), `${JSON.stringify(rec, null, 2)}\n`);
  }

  /** Held while one process asks the archive for an index key (a mirror, suite and architecture). */
  lock(indexKey: string, o: LockOptions): Promise<HeldLock> {
    return this.store.lock('kernel', `index-${indexKey}`, o);
  }

  /** Held while one process updates seen.json. */
  lockSeen(o: LockOptions): Promise<HeldLock> {
    return this.store.lock('kernel', 'seen', o);
  }

  /** Index records that name a tree no longer there would send the next fetch to a missing directory: dropped. */
  async dropDanglingIndex(): Promise<void> {
    for (const name of await readdir(this.index).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      const rec = await this.readIndex(name.slice(0, -5));
      const tree = rec && LAYOUT.kernel.key(rec.tree);
      // lstat, not a read: reading a tree would not be a use, but it is work prune need not do.
      if (rec && !(tree && (await lstat(join(this.treeDir(tree), 'kernel.json')).catch(() => undefined))))
        await rm(join(this.index, name), { force: true });
    }
  }
}

function key(name: string): KernelKey {
  return name as KernelKey;
}

/** Apparent size and file count of a tree, for its record (top-level names in `skip` not counted). */
export async function treeSize(dir: string, skip: string[] = []): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (d === dir && skip.includes(e.name)) continue;
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        files++;
        bytes += (await stat(p)).size;
      }
    }
  };
  await walk(dir);
  return { bytes, files };
}
