// Direct-kernel boot: no loader at all; the VM runner loads the guest's kernel and initrd from the host, and
// Firecracker and cloud-hypervisor need the kernel as an uncompressed ELF (vmlinux), made here from the bzImage.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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
