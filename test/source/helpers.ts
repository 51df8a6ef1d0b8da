// Shared helpers of the source tests: a run context in a sandbox, flattening an opened image, and listing what a directory holds.
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunContext } from '../../src/core/context.js';
import type { Img2vmEvent } from '../../src/core/events.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { LayerFlattener, type FlattenStats } from '../../src/rootfs/layers.js';
import { materialise } from '../../src/rootfs/materialise.js';
import { SpoolStore } from '../../src/rootfs/spool-store.js';
import type { SourceImage } from '../../src/source/image.js';

export interface Sandbox {
  root: string;
  work: string;
  cache: string;
  input: string;
  outside: string;
  events: Img2vmEvent[];
  ctx: RunContext;
  close(): Promise<void>;
}

/** root/{work,cache,input,outside}: a case may write only to work and cache. */
export async function sandbox(): Promise<Sandbox> {
  const root = await mkdtemp(join(tmpdir(), 'img2vm-src-'));
  const dirs = {
    work: join(root, 'work'),
    cache: join(root, 'cache'),
    input: join(root, 'input'),
    outside: join(root, 'outside'),
  };
  for (const d of Object.values(dirs)) await mkdir(d);
  const events: Img2vmEvent[] = [];
  const scope = new Scope();
  const ctx: RunContext = {
    work: dirs.work,
    signal: new AbortController().signal,
    sink: (e) => events.push(e),
    scope,
    random: createRandom('test'),
  };
  return {
    root,
    ...dirs,
    events,
    ctx,
    async close() {
      await scope.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** The image's layers flattened and made real in dest (made here), as the runc builder unpacks an image. */
export async function flatten(img: SourceImage, dest: string, signal?: AbortSignal): Promise<FlattenStats> {
  await mkdir(dest, { recursive: true });
  const spool = new SpoolStore(`${dest}.spool`);
  try {
    const f = new LayerFlattener({ store: spool, epoch: { sec: 0, nsec: 0 }, ...(signal ? { signal } : {}) });
    for (const l of img.layers) await f.applyLayer(await l.open());
    const { tree, stats } = f.finish();
    await materialise(tree, dest, spool, signal ? { signal } : {});
    return stats;
  } finally {
    await rm(spool.dir, { recursive: true, force: true });
  }
}

/** Every path below dir (relative), sorted. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out.sort();
}

/** Files in the blob cache that are not final blobs, and the store's drafts (leftover partial downloads). */
export async function partials(cache: string): Promise<string[]> {
  const dir = join(cache, 'blobs', 'sha256');
  const names = await readdir(dir).catch(() => [] as string[]);
  const drafts = await readdir(join(cache, 'tmp')).catch(() => [] as string[]);
  return [...names.filter((n) => !/^[a-f0-9]{64}$/.test(n)), ...drafts.map((n) => `tmp/${n}`)];
}
