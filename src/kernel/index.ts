// The guest kernel for --init img2vm: getKernel() for every --kernel source, module resolution and kernel facts.
import { join, resolve } from 'node:path';
import type { RunContext } from '../core/context.js';
import { cacheDir } from '../core/paths.js';
import { openStore } from '../store/index.js';
import type { KernelBundle } from './bundle.js';
import { KernelCache } from './cache.js';
import { debianArchiveKernel, localDebKernel } from './debian.js';
import { imageKernel } from './image.js';
import { vmlinuzKernel } from './local.js';
import type { KernelOptions } from './options.js';
import type { KernelSpec } from './spec.js';

export type { KernelBundle } from './bundle.js';
export { archiveOptions, type KernelOptions } from './options.js';
export { parseKernelSource, describeSpec, DEFAULT_SUITE, type KernelSpec, type ParseKernelOptions } from './spec.js';
export {
  resolveModules,
  canonicalModuleName,
  type ModuleFile,
  type ModuleCompression,
  type ResolveOptions,
} from './modules.js';
export { kernelVersionOf } from './bzimage.js';
export { checkKernelArch, kernelArchOf } from './kernel-arch.js';
export { compareDebVersions } from './debversion.js';
export { DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR } from './archive.js';
export { KernelCache } from './cache.js';

/** <cache>/kernels: the trees (kernels/trees/, the store's), their index records and the memory of what was seen. */
export function kernelCacheDir(o: Pick<KernelOptions, 'cacheDir'> = {}): string {
  return join(o.cacheDir ?? cacheDir(), 'kernels');
}

/** Delivers the kernel a spec names: from the cache when it can, fetched, unpacked and verified when it must. */
export async function getKernel(spec: KernelSpec, ctx: RunContext, opts: KernelOptions = {}): Promise<KernelBundle> {
  const cache = new KernelCache(openStore(opts.cacheDir ?? cacheDir()));
  switch (spec.kind) {
    case 'debian-archive':
      return debianArchiveKernel(spec.suite, ctx, opts, cache);
    case 'deb':
      return localDebKernel(resolve(spec.path), ctx, cache);
    case 'vmlinuz':
      return vmlinuzKernel(resolve(spec.path), spec.modulesDir && resolve(spec.modulesDir), ctx);
    case 'image':
      return imageKernel(spec.ref, ctx, opts, cache);
  }
}
