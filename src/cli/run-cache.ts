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

/**
 * The disk for a run of IMAGE: the conversion reads the image and resolves the kernel (which the key needs), then
 * takes the disk from img2vm's store when it holds one for the same key (rootfs, disk and boot are skipped) or
 * converts and keeps it there. Either way the run boots a private copy in its own directory with -snapshot: the
 * store's disk is never handed to QEMU.
 */
export async function cachedDisk(
  image: string,
  o: CacheOptions,
  ctx: { scope: Scope; signal: AbortSignal },
): Promise<CachedDisk> {
  const dir = await mkdtemp(join(tmpdir(), 'img2vm-run-disk-'));
  ctx.scope.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  const renderer = o.quiet ? silentRenderer() : plainRenderer(o.verbose);
  const out = join(dir, 'disk.qcow2');
  let ok = false;
  try {
    const r = await convert(
      { image, output: out, init: o.init },
      { sink: renderer.sink, signal: ctx.signal, scope: ctx.scope, localCache: true },
    );
    ok = true;
    return {
      path: out,
      entrypoint: r.plan.guest.init ? (r.plan.guest.init.entrypoint ?? []) : undefined,
      converted: r.disk?.from == null,
      ...(r.disk ? { key: r.disk.key } : {}),
    };
  } finally {
    await renderer.done(ok);
  }
}
