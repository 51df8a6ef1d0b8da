// Turns collected kernel material into the cached tree boot/vmlinuz-V, boot/config-V, lib/modules/V (with a modules.dep, made by depmod if missing).
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ByteSource, TarReader } from '../rootfs/tar.js';
import { run } from '../tools/index.js';
import { kernelVersionOf } from './bzimage.js';
import { decode } from './codec.js';
import { CollectError, type KernelCollector } from './collect.js';
import { compareDebVersions } from './debversion.js';

export interface AssembledKernel {
  version: string;
  /** Paths relative to the tree's root. */
  vmlinuz: string;
  config?: string;
  modulesDir?: string;
  /** Whether depmod made modules.dep (the source had none). */
  depmod: boolean;
}

export function depmodArgv(baseDir: string, configDir: string, version: string): string[] {
  // -C: an empty configuration, so the host's /etc/depmod.d cannot reorder or hide the guest's modules.
  return ['-b', baseDir, '-C', configDir, version];
}

/** Feeds a staged tar (linuxkit's kernel.tar, possibly compressed) to the collector. */
async function collectStagedTar(
  collector: KernelCollector,
  file: string,
  what: string,
  signal?: AbortSignal,
): Promise<void> {
  const fh = await open(file, 'r');
  const head = Buffer.alloc(512);
  const { bytesRead } = await fh.read(head, 0, 512, 0);
  await fh.close();
  const { chunks } = decode(head.subarray(0, bytesRead), createReadStream(file), {
    signal,
    maxBytes: 16 * 2 ** 30,
    what,
  });
  try {
    await collector.addTar(new TarReader(new ByteSource(chunks)), { whiteouts: false });
  } finally {
    await chunks.return(undefined);
  }
}

const MODULES = /^(?:usr\/)?lib\/modules\/([^/]+)\/(.+)$/;

/**
 * Chooses the kernel among what was collected and moves its files into `dest`. With several
 * vmlinuz-V, the newest that has modules wins (an image may keep an old kernel beside a new one).
 */
export async function assembleKernel(
  collector: KernelCollector,
  dest: string,
  o: { signal?: AbortSignal; what: string },
): Promise<AssembledKernel> {
  let files = collector.files();
  const kernelTar = files.get('kernel.tar');
  if (kernelTar) {
    await collectStagedTar(collector, kernelTar, `${o.what}: /kernel.tar`, o.signal);
    files = collector.files();
  }
  const moduleVersions = new Set<string>();
  for (const p of files.keys()) {
    const m = MODULES.exec(p);
    if (m) moduleVersions.add(m[1]!);
  }
  const versioned = [...files.keys()].map((p) => /^boot\/vmlinuz-(.+)$/.exec(p)?.[1]).filter((v): v is string => !!v);
  let version: string;
  let vmlinuzSrc: string;
  if (versioned.length) {
    versioned.sort((a, b) => compareDebVersions(b, a));
    version = versioned.find((v) => moduleVersions.has(v)) ?? versioned[0]!;
    vmlinuzSrc = files.get(`boot/vmlinuz-${version}`)!;
  } else {
    const unversioned = files.get('kernel') ?? files.get('boot/vmlinuz');
    if (!unversioned)
      throw new CollectError('it holds no kernel (no /boot/vmlinuz-*, /boot/vmlinuz or linuxkit /kernel)');
    vmlinuzSrc = unversioned;
    version = await kernelVersionOf(unversioned);
  }
  if (moduleVersions.size && !moduleVersions.has(version)) {
    throw new CollectError(`its kernel is ${version} but its modules are for ${[...moduleVersions].join(', ')}`);
  }

  await mkdir(join(dest, 'boot'), { recursive: true });
  const result: AssembledKernel = { version, vmlinuz: `boot/vmlinuz-${version}`, depmod: false };
  await rename(vmlinuzSrc, join(dest, result.vmlinuz));
  const config = files.get(`boot/config-${version}`);
  if (config) {
    result.config = `boot/config-${version}`;
    await rename(config, join(dest, result.config));
  }
  if (moduleVersions.has(version)) {
    result.modulesDir = `lib/modules/${version}`;
    // In arrival order, so a later layer's lib/modules file replaces an earlier usr/lib/modules one.
    for (const [p, file] of files) {
      const m = MODULES.exec(p);
      if (!m || m[1] !== version) continue;
      const to = join(dest, result.modulesDir, m[2]!);
      try {
        await mkdir(dirname(to), { recursive: true });
        await rename(file, to);
      } catch (e) {
        // Only a hostile tree has a file where another entry needs a directory.
        throw new CollectError(
          `its modules tree is inconsistent at ${m[2]!} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
        );
      }
    }
    if (!(await stat(join(dest, result.modulesDir, 'modules.dep')).catch(() => undefined))?.isFile()) {
      const empty = await mkdtemp(join(dest, '.depmod-conf-'));
      await run('depmod', depmodArgv(dest, empty, version), { signal: o.signal });
      await rm(empty, { recursive: true, force: true });
      result.depmod = true;
    }
  }
  return result;
}
