// Builds a cached kernel tree from collected material: temp dir, assemble, record, rename into place; hostile-input failures become badImage.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { asWriteError } from '../core/no-space.js';
import { TarFormatError } from '../rootfs/tar.js';
import { ArError } from './ar.js';
import { assembleKernel } from './assemble.js';
import { KernelCache, treeSize, type TreeRecord } from './cache.js';
import { CodecError } from './codec.js';
import { CollectError, KernelCollector } from './collect.js';

/** The errors that mean the kernel source's bytes are bad, not that img2vm is. */
export function isFormatError(e: unknown): e is Error {
  return e instanceof ArError || e instanceof TarFormatError || e instanceof CollectError || e instanceof CodecError;
}

export interface BuildRecord {
  id: string;
  origin: string;
  source: TreeRecord['source'];
}

/**
 * Runs fill(collector, scratch) then assembles and installs the tree under `name`. Nothing reaches
 * trees/ unless every step succeeded; the temp dir is removed on failure and on interruption.
 */
export async function buildTree(cache: KernelCache, name: string, ctx: RunContext, what: string, fill: (c: KernelCollector, scratch: string) => Promise<void>, rec: () => BuildRecord): Promise<TreeRecord> {
  await cache.sweep();
  const tmp = await cache.makeTemp();
  const cleanup = ctx.scope.defer(`kernel temp ${tmp}`, () => rm(tmp, { recursive: true, force: true }));
  try {
    const tree = join(tmp, 'tree');
    const collector = new KernelCollector(join(tmp, 'staging'));
    let record: TreeRecord;
    try {
      await fill(collector, tmp);
      const k = await assembleKernel(collector, tree, { signal: ctx.signal, what });
      const size = await treeSize(tree);
      const r = rec();
      record = {
        format: 1,
        id: r.id,
        version: k.version,
        vmlinuz: k.vmlinuz,
        ...(k.config ? { config: k.config } : {}),
        ...(k.modulesDir ? { modulesDir: k.modulesDir } : {}),
        origin: r.origin,
        createdAt: new Date().toISOString(),
        depmod: k.depmod,
        source: r.source,
        bytes: size.bytes,
        files: size.files,
      };
    } catch (e) {
      if (isFormatError(e)) throw new Img2vmError('badImage', `${what}: ${e.message}`, 'the kernel source is damaged or not a kernel; nothing was cached');
      throw asWriteError(e, { area: 'cache', what: `the kernel from ${what}`, path: cache.root });
    }
    try {
      await writeFile(join(tree, 'kernel.json'), `${JSON.stringify(record, null, 2)}\n`);
    } catch (e) {
      throw asWriteError(e, { area: 'cache', what: `the kernel from ${what}`, path: cache.root });
    }
    await cache.install(name, tree);
    return (await cache.readTree(name)) ?? record;
  } finally {
    await cleanup();
  }
}
