// The disk `img2vm run IMAGE` boots: the image converted once (--init img2vm by default) and kept in img2vm's store.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convert } from '../convert.js';
import type { Scope } from '../core/scope.js';
import { plainRenderer, silentRenderer } from './render.js';

export interface CachedDisk {
  /** The disk to boot (never written: runs use QEMU's -snapshot). */
  path: string;
  /** The image's ENTRYPOINT, which this run's command follows (docker's rule); undefined: no img2vm init. */
  entrypoint?: string[];
  /** Whether this run converted the image (false: the store had it). */
  converted: boolean;
  key?: string;
}

export interface CacheOptions {
  init: 'img2vm' | 'distro';
  quiet: boolean;
  verbose: boolean;
}

/** Converts IMAGE for a run (placeholder until the disk store lands: a private conversion per run). */
export async function cachedDisk(
  image: string,
  o: CacheOptions,
  ctx: { scope: Scope; signal: AbortSignal },
): Promise<CachedDisk> {
  const dir = await mkdtemp(join(tmpdir(), 'img2vm-run-disk-'));
  ctx.scope.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  const renderer = o.quiet ? silentRenderer() : plainRenderer(o.verbose);
  const out = join(dir, 'disk.qcow2');
  const r = await convert(
    { image, output: out, init: o.init },
    { sink: renderer.sink, signal: ctx.signal, scope: ctx.scope },
  );
  await renderer.done(true);
  return { path: out, entrypoint: r.plan.guest.init?.entrypoint, converted: true };
}
