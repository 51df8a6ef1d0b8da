// Guest builds in the store (kind build: the runc builder's layers), and the use stamps of the podman builder's images.
//
// <cache>/builds/runc/<key>/   build.json  what was built from what
//                              config.json the built image's config, byte for byte (its digest is the image id)
//                              layer.tar   the whole built tree as one uncompressed layer
// <cache>/builds/podman/cache-<tag>.used  last use of podman's img2vm-cache:<tag> (source-<tag>.used: img2vm-source:<tag>)
import { closeSync, createReadStream, openSync } from 'node:fs';
import { lstat, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import type { SourceImage } from '../source/image.js';
import { ImageConfigSchema } from '../source/image.js';
import type { BuildKey, Check, Store } from '../store/index.js';

export const BuildRecordSchema = z.object({
  format: z.literal(1),
  builder: z.literal('runc'),
  key: z.string().regex(/^[0-9a-f]{64}$/),
  base: z.string(),
  template: z.string(),
  label: z.string(),
  createdAt: z.string(),
  layer: z.object({
    digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
    size: z.number().int().nonnegative(),
    entries: z.number().int().nonnegative(),
  }),
  configDigest: z.string(),
});

export type BuildRecord = z.infer<typeof BuildRecordSchema>;

export interface CachedBuild {
  record: BuildRecord;
  dir: string;
  configBytes: Buffer;
}

/** A complete entry's parts, or undefined (missing, half-removed or unreadable entries count as missing). */
async function readEntry(dir: string, key: string): Promise<CachedBuild | undefined> {
  try {
    const r = BuildRecordSchema.safeParse(JSON.parse(await readFile(join(dir, 'build.json'), 'utf8')));
    if (!r.success || r.data.key !== key) return undefined;
    const st = await lstat(join(dir, 'layer.tar'));
    if (!st.isFile() || st.size !== r.data.layer.size) return undefined;
    return { record: r.data, dir, configBytes: await readFile(join(dir, 'config.json')) };
  } catch {
    return undefined;
  }
}

/** A build is whole when its record names its key and its layer has the size recorded (hashing the layer on every use would cost a read of it). */
export function buildCheck(key: string): Check {
  return { whole: async (dir) => !!(await readEntry(dir, key)) };
}

export class BuildCache {
  readonly podman: string;

  constructor(readonly store: Store) {
    this.podman = join(store.root, 'builds', 'podman');
  }

  entryDir(key: string): string {
    return this.store.path('build', key as BuildKey);
  }

  /** A complete entry, or undefined; neither held nor a use (for listing). */
  find(key: string): Promise<CachedBuild | undefined> {
    return readEntry(this.entryDir(key), key);
  }

  /**
   * Takes an entry for this run: held in the store (so `cache prune` leaves it alone while the run lives), its use
   * recorded, and an open descriptor on the layer (so even a forced removal cannot pull it from under the run). The
   * hold and the descriptor are released when the scope closes. Undefined when the entry is not (or no longer) there.
   */
  async use(key: string, scope: Scope, ref: string): Promise<SourceImage | undefined> {
    if (!(await this.store.take('build', key as BuildKey, scope, buildCheck(key)))) return undefined;
    const dir = this.entryDir(key);
    const entry = await this.find(key);
    if (!entry) return undefined;
    let fd: number;
    try {
      fd = openSync(join(dir, 'layer.tar'), 'r');
    } catch {
      return undefined;
    }
    scope.defer(`close cached build ${key.slice(0, 16)}`, () => closeSync(fd));
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

  /**
   * The entry, built by make(dir) once across processes when it is not in the store: one process builds a key at a
   * time, the others wait and then take its result. make writes build.json, config.json and layer.tar into dir.
   */
  async build(
    key: string,
    ctx: RunContext,
    ref: string,
    onWait: (pid: number) => void,
    make: (dir: string) => Promise<void>,
  ): Promise<{ image: SourceImage; made: boolean }> {
    const { made } = await this.store.ensure('build', key as BuildKey, {
      scope: ctx.scope,
      check: buildCheck(key),
      lock: { signal: ctx.signal, onWait },
      make: (d) => make(d.path),
    });
    const image = await this.use(key, ctx.scope, ref);
    if (!image)
      throw new Img2vmError(
        'outputNotWritable',
        `the runc build was stored in ${this.entryDir(key)} but cannot be read back`,
        'check that directory (disk full, or removed meanwhile)',
      );
    return { image, made };
  }

  /** Where the last use of a podman image img2vm tagged REPO:TAG is stamped ("cache" or "source", and the tag). */
  podmanStamp(kind: 'cache' | 'source', tag: string): string {
    return join(this.podman, `${kind}-${tag}.used`);
  }

  /** Records a use of a podman image img2vm made (podman keeps no last-use time of its own): the stamp's mtime, as for the store's entries. */
  async touchPodman(kind: 'cache' | 'source', tag: string): Promise<void> {
    await mkdir(this.podman, { recursive: true }).catch(() => undefined);
    const p = this.podmanStamp(kind, tag);
    const now = new Date();
    await utimes(p, now, now).catch(() => writeFile(p, '').catch(() => undefined));
  }
}
