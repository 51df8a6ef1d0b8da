// Direct-kernel output for microVM runners: NAME.ext4 (the bare root file system), the kernel and initrd beside it,
// a Firecracker config and a cloud-hypervisor command line that boot them.
import { basename, dirname, join } from 'node:path';
import type { OutputFormat } from './format.js';

export interface RootfsArtifacts {
  /** NAME.ext4 — the root file system, no partition table. */
  ext4: string;
  kernel: string;
  initrd?: string;
  firecracker: string;
  cloudHypervisor: string;
}

/** The companion files of an output NAME.ext4 (or NAME.anything): NAME.vmlinuz, NAME.initrd.img, NAME.firecracker.json, NAME.cloud-hypervisor.sh. */
export function rootfsArtifacts(output: string, withInitrd: boolean): RootfsArtifacts {
  const dir = dirname(output);
  const name = basename(output).replace(/\.(ext4|img|raw)$/i, '');
  return {
    ext4: output,
    kernel: join(dir, `${name}.vmlinuz`),
    initrd: withInitrd ? join(dir, `${name}.initrd.img`) : undefined,
    firecracker: join(dir, `${name}.firecracker.json`),
    cloudHypervisor: join(dir, `${name}.cloud-hypervisor.sh`),
  };
}

/** Root on the first virtio disk; the serial console of each runner. */
export function directKernelCmdline(extra?: string, console = 'ttyS0'): string {
  return [`root=/dev/vda`, 'rw', `console=${console}`, ...(extra ? [extra] : [])].join(' ');
}

export function firecrackerConfig(a: RootfsArtifacts, opts: { mem: number; cpus: number; cmdline?: string }): string {
  // Paths relative to the config, so the set can be moved together.
  const rel = (p: string) => `./${basename(p)}`;
  return `${JSON.stringify(
    {
      'boot-source': {
        kernel_image_path: rel(a.kernel),
        ...(a.initrd ? { initrd_path: rel(a.initrd) } : {}),
        boot_args: directKernelCmdline(`reboot=k panic=1 pci=off${opts.cmdline ? ` ${opts.cmdline}` : ''}`),
      },
      drives: [{ drive_id: 'rootfs', path_on_host: rel(a.ext4), is_root_device: true, is_read_only: false }],
      'machine-config': { vcpu_count: opts.cpus, mem_size_mib: opts.mem },
    },
    null,
    2,
  )}\n`;
}

export function cloudHypervisorScript(a: RootfsArtifacts, opts: { mem: number; cpus: number; cmdline?: string }): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/bin/sh',
    '# Written by img2vm: boots the direct-kernel output with cloud-hypervisor (needs KVM). Run it from any directory.',
    'cd "$(dirname "$0")"',
    'exec cloud-hypervisor \\',
    `  --kernel ${q(`./${basename(a.kernel)}`)} \\`,
    ...(a.initrd ? [`  --initramfs ${q(`./${basename(a.initrd)}`)} \\`] : []),
    `  --cmdline ${q(directKernelCmdline(opts.cmdline))} \\`,
    `  --disk path=${q(`./${basename(a.ext4)}`)} \\`,
    `  --cpus boot=${opts.cpus} --memory size=${opts.mem}M \\`,
    '  --serial tty --console off "$@"',
    '',
  ].join('\n');
}

export const rootfs: OutputFormat = {
  id: 'rootfs',
  extensions: ['.ext4'],
  isRaw: true,
  directKernel: true,
  async write() {
    // the pipeline writes the file system in place and the companion files itself
  },
};
