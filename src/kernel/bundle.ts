// The kernel a guest boots, as every kernel source delivers it, and how a cached tree becomes one.
import { join } from 'node:path';
import type { TreeRecord } from './cache.js';

export interface KernelBundle {
  /** The kernel release, as uname -r prints it. */
  version: string;
  /** Absolute path of the kernel image (bzImage). */
  vmlinuz: string;
  /** Absolute path of lib/modules/<version>, with modules.dep; absent when everything is built in. */
  modulesDir?: string;
  /** Absolute path of the kernel's config, when the source has one. */
  config?: string;
  /** Where the kernel came from, for people. */
  origin: string;
  /** A content hash identifying this kernel and its modules, for caches of what is built from it. */
  id: string;
  /** Only resolved, not fetched (KernelOptions.peek): id and origin are known, the files are not there. */
  peeked?: true;
}

export function bundleOf(treeDir: string, r: TreeRecord): KernelBundle {
  const b: KernelBundle = { version: r.version, vmlinuz: join(treeDir, r.vmlinuz), origin: r.origin, id: r.id };
  if (r.modulesDir) b.modulesDir = join(treeDir, r.modulesDir);
  if (r.config) b.config = join(treeDir, r.config);
  return b;
}
