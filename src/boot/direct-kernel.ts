// Direct-kernel boot: no loader at all; the VM runner loads the guest's kernel and initrd from the host, and
// Firecracker and cloud-hypervisor need the kernel uncompressed: on x86-64 an ELF vmlinux, made here from the
// bzImage; on arm64 the Image itself (a gzip-wrapped one unwrapped).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Img2vmError } from '../core/errors.js';
import { kernelArchOf } from '../kernel/index.js';
import { kernelFiles, type BootLoader } from './loader.js';
import { extractVmlinux } from './vmlinux.js';

export const directKernel: BootLoader = {
  id: 'direct-kernel',
  label: 'none (direct kernel boot)',
  tools: [],
  hostFiles: () => [],
  files: (i) => ({
    guestFiles: [],
    exports: i.kernel ? kernelExports(kernelFiles(i.kernel)) : [],
  }),
  async prepare(plan, exported, env) {
    const vmlinuz = exported.get('vmlinuz');
    if (!vmlinuz) throw new Error('the direct-kernel output needs the guest kernel exported');
    if (plan.architecture.arch === 'arm64') {
      const dest = join(env.work, 'vmlinux');
      await writeFile(dest, arm64Image(await readFile(vmlinuz), plan.kernel?.version ?? 'the kernel'));
      return new Map([['vmlinux', dest]]);
    }
    const vmlinux = await extractVmlinux(await readFile(vmlinuz), env.work, env.signal);
    const dest = join(env.work, 'vmlinux');
    await writeFile(dest, vmlinux.elf);
    if (!vmlinux.pvh) {
      env.sink({
        type: 'log',
        level: 'warn',
        stage: 'boot',
        message: `kernel ${plan.kernel?.version} has no PVH entry note: Firecracker can boot its vmlinux, cloud-hypervisor cannot`,
      });
    }
    return new Map([['vmlinux', dest]]);
  },
};

export function kernelExports(f: { kernel: string; initrd?: string }): { path: string; as: string }[] {
  return [{ path: f.kernel, as: 'vmlinuz' }, ...(f.initrd ? [{ path: f.initrd, as: 'initrd.img' }] : [])];
}

/** The uncompressed arm64 Image that Firecracker and cloud-hypervisor load on aarch64 (gzip unwrapped). */
export function arm64Image(kernel: Buffer, what: string): Buffer {
  const k = kernelArchOf(kernel.subarray(0, 64 << 10));
  const bad = (why: string) =>
    new Img2vmError(
      'badImage',
      `${what} cannot be booted directly: ${why}`,
      'write a disk (e.g. -o disk.qcow2) instead',
    );
  if (k?.arch !== 'arm64') throw bad(`it is ${k ? k.evidence : 'no kernel image img2vm knows'}, not an arm64 Image`);
  if (/zboot/.test(k.evidence)) throw bad('it is an EFI zboot image, which microVM runners do not load');
  const image = /gzip/.test(k.evidence) ? gunzipSync(kernel, { maxOutputLength: 512 << 20 }) : kernel;
  return image;
}
