// Direct-kernel boot: no loader at all; the VM runner loads the guest's kernel and initrd from the host, and
// Firecracker and cloud-hypervisor need the kernel as an uncompressed ELF (vmlinux), made here from the bzImage.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConversionRun } from '../core/conversion.js';
import { kernelFiles, type BootLoader } from './loader.js';
import { extractVmlinux } from './vmlinux.js';

export const directKernel: BootLoader = {
  id: 'direct-kernel',
  label: 'none (direct kernel boot)',
  tools: [],
  files: (i) => ({
    guestFiles: [],
    exports: i.kernel ? kernelExports(kernelFiles(i.kernel)) : [],
  }),
  async prepare(r: ConversionRun) {
    const vmlinux = await extractVmlinux(await readFile(r.exported.get('vmlinuz')!), r.ctx.work, r.ctx.signal);
    const dest = join(r.ctx.work, 'vmlinux');
    await writeFile(dest, vmlinux.elf);
    r.exported.set('vmlinux', dest);
    if (!vmlinux.pvh) {
      r.ctx.sink({ type: 'log', level: 'warn', stage: 'boot', message: `kernel ${r.plan.kernel?.version} has no PVH entry note: Firecracker can boot its vmlinux, cloud-hypervisor cannot` });
    }
  },
};

export function kernelExports(f: { kernel: string; initrd?: string }): { path: string; as: string }[] {
  return [{ path: f.kernel, as: 'vmlinuz' }, ...(f.initrd ? [{ path: f.initrd, as: 'initrd.img' }] : [])];
}
