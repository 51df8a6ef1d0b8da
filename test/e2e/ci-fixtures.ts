// What the CI-shaped tests share: a small busybox image as an OCI archive, and img2vm's default kernel as plain
// files (fetched once into the default cache), so a "fresh machine" needs neither a daemon nor the network.
import { execa } from 'execa';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { layerOf, writeOciArchive } from '../../fixtures/oci.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { getKernel, parseKernelSource } from '../../src/kernel/index.js';

/** A busybox userland whose workload prints `message` and exits 0, as oci-archive FILE. */
export async function busyboxArchive(file: string, message: string): Promise<void> {
  const applets = ['sh', 'echo', 'cat', 'ls'];
  await writeOciArchive(
    file,
    [
      await layerOf([
        { name: 'bin/', dir: true },
        { name: 'bin/busybox', mode: 0o755, content: await readFile('/bin/busybox') },
        ...applets.map((a) => ({ name: `bin/${a}`, symlink: 'busybox' })),
      ]),
    ],
    { Cmd: ['/bin/sh', '-c', `echo ${message}; exit 0`] },
  );
}

/** img2vm's default kernel copied to DIR/vmlinuz and DIR/modules; the --kernel arguments that name them. */
export async function kernelFiles(dir: string): Promise<string[]> {
  const scope = new Scope();
  try {
    const k = await getKernel(parseKernelSource(undefined), {
      work: dir,
      signal: new AbortController().signal,
      sink: () => {},
      scope,
      random: createRandom('kernel'),
    });
    await mkdir(dir, { recursive: true });
    await execa('cp', ['-a', k.vmlinuz, join(dir, 'vmlinuz')]);
    await execa('cp', ['-a', k.modulesDir!, join(dir, 'modules')]);
  } finally {
    await scope.close();
  }
  return ['--kernel', join(dir, 'vmlinuz'), '--kernel-modules', join(dir, 'modules')];
}
