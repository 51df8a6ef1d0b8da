// Builds a kernel tree in the store from collected material: draft, assemble, record, publish; hostile-input failures become badImage.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { asWriteError } from '../core/no-space.js';
import { TarFormatError } from '../rootfs/tar.js';
import { ArError } from './ar.js';
import { assembleKernel } from './assemble.js';
import type { KernelKey } from '../store/index.js';
import { TREE_CHECK, treeSize, type KernelCache, type TreeRecord } from './cache.js';
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
 * Runs fill(collector, scratch) then assembles the tree and publishes it in the store under `name`, once across
 * processes (a concurrent run unpacking the same kernel waits, then takes this one). Nothing reaches the store
 * unless every step succeeded and the tree checks out; the draft is removed on failure and on interruption.
 */
export async function buildTree(
  cache: KernelCache,
  name: string,
  ctx: RunContext,
  what: string,
  fill: (c: KernelCollector, scratch: string) => Promise<void>,
  rec: () => BuildRecord,
): Promise<TreeRecord> {
  let record: TreeRecord | undefined;
  const onWait = (pid: number) =>
    ctx.sink({
      type: 'log',
      level: 'info',
      stage: 'guest',
      message: `kernel: waiting for img2vm process ${pid}, which is unpacking the same kernel`,
    });
  await cache.store.ensure('kernel', name as KernelKey, {
    scope: ctx.scope,
    check: TREE_CHECK,
    lock: { signal: ctx.signal, onWait },
    make: async (draft) => {
      const tree = draft.path;
      const collector = new KernelCollector(join(draft.scratch, 'staging'));
      try {
        await fill(collector, draft.scratch);
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
        if (isFormatError(e))
          throw new Img2vmError(
            'badImage',
            `${what}: ${e.message}`,
            'the kernel source is damaged or not a kernel; nothing was cached',
          );
        throw asWriteError(e, { area: 'cache', what: `the kernel from ${what}`, path: cache.root });
      }
      try {
        await writeFile(join(tree, 'kernel.json'), `${JSON.stringify(record, null, 2)}\n`);
        await draft.publish(TREE_CHECK);
      } catch (e) {
        throw asWriteError(e, { area: 'cache', what: `the kernel from ${what}`, path: cache.root });
      }
    },
  });
  const stored = (await cache.readTree(name, { verify: false })) ?? record;
  if (stored) return stored;
  throw new Img2vmError(
    'outputNotWritable',
    `the kernel from ${what} was stored in ${cache.treeDir(name)} but cannot be read back`,
    'check that directory (disk full, or removed meanwhile)',
  );
}
