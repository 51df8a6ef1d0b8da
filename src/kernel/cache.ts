// The kernel cache beside the blob cache: complete kernel trees by content address, index records with a TTL, locks and in-flight temp dirs.
//
// <cache>/kernels/trees/sha256-<deb sha256>/   one unpacked kernel package (from the archive or a local .deb)
// <cache>/kernels/trees/image-<config hex>/   the kernel of one container image
//     kernel.json  boot/vmlinuz-V  boot/config-V  lib/modules/V/...
// <cache>/kernels/index/<key>.json           which tree a mirror + suite resolved to, and when
// <cache>/kernels/seen.json                  the newest Release dates and kernels seen (seen.ts); outlives prune
// <cache>/kernels/locks/<key>.lock           held while one process fetches for that key (seen.lock: seen.json)
// <cache>/kernels/tmp/<pid>-<random>/         in flight; renamed into trees/ only when complete
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { acquireLock, pidAlive, type HeldLock, type LockOptions } from './lock.js';

export const TreeSourceSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('debian-archive'), suite: z.string(), from: z.string(), package: z.string(), packageVersion: z.string(), url: z.string(), sha256: z.string(), size: z.number() }),
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

const TMP_MAX_AGE = 24 * 3600_000;

export class KernelCache {
  readonly trees: string;
  readonly index: string;
  readonly locks: string;
  readonly tmp: string;

  constructor(readonly root: string) {
    this.trees = join(root, 'trees');
    this.index = join(root, 'index');
    this.locks = join(root, 'locks');
    this.tmp = join(root, 'tmp');
  }

  treeDir(name: string): string {
    return join(this.trees, name);
  }

  /**
   * A tree's record, if the tree is complete and its record readable. With verify (for use, not for listing) the
   * tree must still hold the files and bytes its record counted; a damaged tree is removed, so it is fetched again.
   */
  async readTree(name: string, o: { verify?: boolean } = {}): Promise<TreeRecord | undefined> {
    const dir = this.treeDir(name);
    let record: TreeRecord;
    try {
      const r = TreeRecordSchema.safeParse(JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')));
      if (!r.success) return undefined;
      record = r.data;
    } catch {
      return undefined;
    }
    const st = await stat(join(dir, record.vmlinuz)).catch(() => undefined);
    if (o.verify === false) return st?.isFile() ? record : undefined;
    const ino = (await stat(dir).catch(() => undefined))?.ino;
    const size = st?.isFile() ? await treeSize(dir, ['kernel.json']).catch(() => undefined) : undefined;
    if (size && size.bytes === record.bytes && size.files === record.files) return record;
    if (ino !== undefined) await this.discard(name, ino);
    return undefined;
  }

  /** Moves a damaged tree out of trees/ (unless another process has replaced it since it was read) and removes it. */
  private async discard(name: string, ino: number): Promise<void> {
    if ((await stat(this.treeDir(name)).catch(() => undefined))?.ino !== ino) return;
    const tmp = await this.makeTemp();
    const gone = join(tmp, 'damaged');
    try {
      await rename(this.treeDir(name), gone);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async allTrees(): Promise<{ name: string; record: TreeRecord }[]> {
    const names = await readdir(this.trees).catch(() => [] as string[]);
    const out: { name: string; record: TreeRecord }[] = [];
    for (const name of names) {
      const record = await this.readTree(name, { verify: false });
      if (record) out.push({ name, record });
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
    await mkdir(this.index, { recursive: true });
    const tmp = join(this.index, `.${key}.${process.pid}.${randomBytes(4).toString('hex')}`);
    await writeFile(tmp, `${JSON.stringify(rec, null, 2)}\n`);
    await rename(tmp, join(this.index, `${key}.json`));
  }

  lock(key: string, o: LockOptions): Promise<HeldLock> {
    return acquireLock(join(this.locks, `${key}.lock`), o);
  }

  /** A private directory for building a tree; its name carries the pid so a later run can sweep it once that process is gone. */
  async makeTemp(): Promise<string> {
    await mkdir(this.tmp, { recursive: true });
    const dir = join(this.tmp, `${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(dir);
    return dir;
  }

  /** Removes what killed runs left in tmp/. */
  async sweep(): Promise<void> {
    for (const name of await readdir(this.tmp).catch(() => [] as string[])) {
      const pid = Number(name.split('-')[0]);
      const p = join(this.tmp, name);
      const st = await stat(p).catch(() => undefined);
      if (!st) continue;
      if ((Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid)) || Date.now() - st.mtimeMs > TMP_MAX_AGE) {
        await rm(p, { recursive: true, force: true });
      }
    }
  }

  /**
   * Moves a complete tree (with its kernel.json already written) into place. When another process
   * was faster, its tree is kept and ours dropped: both were built from the same verified bytes.
   */
  async install(name: string, built: string): Promise<void> {
    await mkdir(this.trees, { recursive: true });
    try {
      await rename(built, this.treeDir(name));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      await rm(built, { recursive: true, force: true });
    }
  }
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
