// img2vm's own store of guest builds (the runc builder's layers, the podman builder's use stamps), shared by concurrent processes.
//
// <cache>/builds/runc/<key>/build.json   what was built from what (written last: its presence means complete)
//                          config.json  the built image's config, byte for byte (its digest is the image id)
//                          layer.tar    the whole built tree as one uncompressed layer
//                          used         touched on every use: its mtime is the entry's last use
//                          holders/<pid>-<nonce>   one per running process that uses the entry
// <cache>/builds/podman/cache-<tag>.used  last use of podman's img2vm-cache:<tag> (source-<tag>.used: img2vm-source:<tag>)
// <cache>/builds/locks/<builder>-<key>.lock  held while one process builds that key
// <cache>/builds/tmp/<pid>-<nonce>/      an entry being written; renamed into place when complete
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Scope } from '../core/scope.js';
import { cacheDir } from '../core/paths.js';
import { acquireLock, pidAlive, type HeldLock, type LockOptions } from '../kernel/lock.js';
import type { SourceImage } from '../source/image.js';
import { ImageConfigSchema } from '../source/image.js';

export const BuildRecordSchema = z.object({
  format: z.literal(1),
  builder: z.literal('runc'),
  key: z.string().regex(/^[0-9a-f]{64}$/),
  base: z.string(),
  template: z.string(),
  label: z.string(),
  createdAt: z.string(),
  layer: z.object({ digest: z.string().regex(/^sha256:[0-9a-f]{64}$/), size: z.number().int().nonnegative(), entries: z.number().int().nonnegative() }),
  configDigest: z.string(),
});

export type BuildRecord = z.infer<typeof BuildRecordSchema>;

const TMP_MAX_AGE = 24 * 3600_000;

export function buildsDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), 'builds');
}

export interface CachedBuild {
  record: BuildRecord;
  dir: string;
  configBytes: Buffer;
}

export class BuildCache {
  readonly runc: string;
  readonly podman: string;
  readonly locks: string;
  readonly tmp: string;

  constructor(readonly root: string = buildsDir()) {
    this.runc = join(root, 'runc');
    this.podman = join(root, 'podman');
    this.locks = join(root, 'locks');
    this.tmp = join(root, 'tmp');
  }

  entryDir(key: string): string {
    return join(this.runc, key);
  }

  /** A complete entry, or undefined (missing, half-removed or unreadable entries count as missing). */
  async find(key: string): Promise<CachedBuild | undefined> {
    const dir = this.entryDir(key);
    try {
      const r = BuildRecordSchema.safeParse(JSON.parse(await readFile(join(dir, 'build.json'), 'utf8')));
      if (!r.success || r.data.key !== key) return undefined;
      const st = await stat(join(dir, 'layer.tar'));
      if (!st.isFile() || st.size !== r.data.layer.size) return undefined;
      return { record: r.data, dir, configBytes: await readFile(join(dir, 'config.json')) };
    } catch {
      return undefined;
    }
  }

  /**
   * Takes an entry for this run: a holder file (so `cache prune` leaves it alone while the run lives), the use
   * stamp, and an open descriptor on the layer (so even a forced removal cannot pull it from under the run).
   * All three are released when the scope closes. Undefined when the entry is not (or no longer) there.
   */
  async use(key: string, scope: Scope, ref: string): Promise<SourceImage | undefined> {
    const dir = this.entryDir(key);
    if (!(await this.find(key))) return undefined;
    // Not recursive: an entry removed meanwhile must not be brought back as an empty directory.
    await mkdir(join(dir, 'holders')).catch(() => undefined);
    const holder = join(dir, 'holders', `${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await writeFile(holder, '', { flag: 'wx' });
    } catch {
      return undefined;
    }
    const dropHolder = () => rm(holder, { force: true });
    const entry = await this.find(key);
    if (!entry) {
      await dropHolder();
      return undefined;
    }
    let fd: number;
    try {
      fd = openSync(join(dir, 'layer.tar'), 'r');
    } catch {
      await dropHolder();
      return undefined;
    }
    scope.defer(`release cached build ${key.slice(0, 16)}`, async () => {
      closeSync(fd);
      await dropHolder();
    });
    await this.touch(join(dir, 'used'));
    const config = ImageConfigSchema.parse(JSON.parse(entry.configBytes.toString('utf8')));
    const { layer } = entry.record;
    return {
      ref,
      id: entry.record.configDigest,
      config,
      configBytes: entry.configBytes,
      layers: [
        {
          name: `runc build ${key.slice(0, 16)} (${layer.digest})`,
          digest: layer.digest,
          size: layer.size,
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          // Positional reads on the one descriptor: several readers may stream it at once.
          open: async () => createReadStream('', { fd, start: 0, autoClose: false, emitClose: true }),
        },
      ],
    };
  }

  lock(builder: string, key: string, o: LockOptions): Promise<HeldLock> {
    return acquireLock(join(this.locks, `${builder}-${key}.lock`), o);
  }

  /** A private directory for writing an entry; its name carries the pid so a later run can sweep it. */
  async makeTemp(): Promise<string> {
    await mkdir(this.tmp, { recursive: true });
    const dir = join(this.tmp, `${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(dir);
    return dir;
  }

  /** Moves a complete entry into place (build.json already written); a faster process's identical entry wins. */
  async install(key: string, built: string): Promise<void> {
    await mkdir(this.runc, { recursive: true });
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(built, this.entryDir(key));
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
        if ((await this.find(key)) || attempt > 0) {
          await rm(built, { recursive: true, force: true });
          return;
        }
        // A broken leftover (a removal that was interrupted) is moved aside, then ours takes its place.
        await this.discard(key);
      }
    }
  }

  /** Takes an entry out of view at once (rename), then deletes it. */
  async discard(key: string): Promise<void> {
    await mkdir(this.tmp, { recursive: true });
    const gone = join(this.tmp, `${process.pid}-${randomBytes(6).toString('hex')}-gone`);
    try {
      await rename(this.entryDir(key), gone);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    await rm(gone, { recursive: true, force: true });
  }

  /** Removes entries being written by processes that are gone. */
  async sweep(): Promise<void> {
    for (const name of await readdir(this.tmp).catch(() => [] as string[])) {
      const p = join(this.tmp, name);
      const pid = Number(name.split('-')[0]);
      const st = await stat(p).catch(() => undefined);
      if (!st) continue;
      if ((Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid)) || Date.now() - st.mtimeMs > TMP_MAX_AGE) {
        await rm(p, { recursive: true, force: true });
      }
    }
  }

  /** Where the last use of a podman image img2vm tagged REPO:TAG is stamped ("cache" or "source", and the tag). */
  podmanStamp(kind: 'cache' | 'source', tag: string): string {
    return join(this.podman, `${kind}-${tag}.used`);
  }

  /** Records a use of a podman image img2vm made (podman keeps no last-use time of its own). */
  async touchPodman(kind: 'cache' | 'source', tag: string): Promise<void> {
    await mkdir(this.podman, { recursive: true }).catch(() => undefined);
    await this.touch(this.podmanStamp(kind, tag));
  }

  private async touch(p: string): Promise<void> {
    const now = new Date();
    try {
      await utimes(p, now, now);
    } catch {
      await writeFile(p, '').catch(() => undefined);
    }
  }
}

/** Pids of live processes holding an entry (their holder files), so prune can leave it alone. */
export async function liveHolders(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir(join(dir, 'holders')).catch(() => [] as string[])) {
    const pid = Number(name.split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) out.push(pid);
    else await rm(join(dir, 'holders', name), { force: true }).catch(() => undefined);
  }
  return out;
}
