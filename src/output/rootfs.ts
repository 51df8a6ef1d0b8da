// Direct-kernel output for microVM runners: NAME.ext4 (the bare root file system), the kernel and initrd beside it,
// a Firecracker config and a cloud-hypervisor command line that boot them.
import { chmod, copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import type { GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import { tempBeside as tmp } from '../core/leftovers.js';
import type { OutputFormat } from './format.js';

export interface RootfsArtifacts {
  /** NAME.ext4 — the root file system, no partition table. */
  ext4: string;
  /** The distribution's bzImage, as QEMU's -kernel and libvirt take it. */
  kernel: string;
  /** The same kernel as an uncompressed ELF: Firecracker loads only ELF on x86-64, cloud-hypervisor boots its PVH entry. */
  vmlinux: string;
  initrd?: string;
  firecracker: string;
  cloudHypervisor: string;
}

/** The companion files of an output NAME.ext4: NAME.vmlinuz, NAME.vmlinux, NAME.initrd.img, NAME.firecracker.json, NAME.cloud-hypervisor.sh. */
export function rootfsArtifacts(output: string, withInitrd: boolean): RootfsArtifacts {
  const dir = dirname(output);
  const name = basename(output).replace(/\.(ext4|img|raw)$/i, '');
  return {
    ext4: output,
    kernel: join(dir, `${name}.vmlinuz`),
    vmlinux: join(dir, `${name}.vmlinux`),
    initrd: withInitrd ? join(dir, `${name}.initrd.img`) : undefined,
    firecracker: join(dir, `${name}.firecracker.json`),
    cloudHypervisor: join(dir, `${name}.cloud-hypervisor.sh`),
  };
}

/** Root on the first virtio disk; the serial console of each runner. */
export function directKernelCmdline(extra?: string, console = 'ttyS0'): string {
  return [`root=/dev/vda`, 'rw', `console=${console}`, ...(extra ? [extra] : [])].join(' ');
}

/** The runner configs' options: size, the command line's extra words, and the serial console of the runner. */
export interface RunnerOptions {
  mem: number;
  cpus: number;
  cmdline?: string;
  /** Firecracker's serial is ttyS0 on x86-64 and aarch64 alike; cloud-hypervisor's is ttyAMA0 (PL011) on aarch64. */
  arch?: GuestArch;
}

export function firecrackerConfig(a: RootfsArtifacts, opts: RunnerOptions): string {
  // Paths relative to the config, so the set can be moved together.
  const rel = (p: string) => `./${basename(p)}`;
  return `${JSON.stringify(
    {
      'boot-source': {
        kernel_image_path: rel(a.vmlinux),
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

export function cloudHypervisorScript(a: RootfsArtifacts, opts: RunnerOptions): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/bin/sh',
    '# Written by img2vm: boots the direct-kernel output with cloud-hypervisor (needs KVM). Run it from any directory.',
    'cd "$(dirname "$0")"',
    'exec cloud-hypervisor \\',
    `  --kernel ${q(`./${basename(a.vmlinux)}`)} \\`,
    ...(a.initrd ? [`  --initramfs ${q(`./${basename(a.initrd)}`)} \\`] : []),
    `  --cmdline ${q(directKernelCmdline(opts.cmdline, opts.arch === 'arm64' ? 'ttyAMA0' : 'ttyS0'))} \\`,
    `  --disk path=${q(`./${basename(a.ext4)}`)} \\`,
    `  --cpus boot=${opts.cpus} --memory size=${opts.mem}M \\`,
    '  --serial tty --console off "$@"',
    '',
  ].join('\n');
}

const FirecrackerConfigSchema = z.object({
  'boot-source': z.object({
    kernel_image_path: z.string().min(1),
    initrd_path: z.string().min(1).optional(),
    boot_args: z.string().default(''),
  }),
  drives: z.array(
    z.object({
      drive_id: z.string(),
      path_on_host: z.string().min(1),
      is_root_device: z.boolean(),
      is_read_only: z.boolean().optional(),
    }),
  ),
  'machine-config': z
    .object({ vcpu_count: z.number().int().positive(), mem_size_mib: z.number().int().positive() })
    .optional(),
});

/** What a Firecracker config boots, with paths made absolute. */
export interface DirectBoot {
  config: string;
  kernel: string;
  initrd?: string;
  cmdline: string;
  /** The root device first, then any other drives in config order. */
  drives: { path: string; readOnly: boolean }[];
  memMiB?: number;
  cpus?: number;
}

/**
 * Reads a Firecracker config as `img2vm test`/`run` need it. Relative paths are taken from the config's own
 * directory (where img2vm writes the files); Firecracker itself takes them from its working directory.
 */
export async function readFirecrackerConfig(path: string): Promise<DirectBoot> {
  const config = resolve(path);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(config, 'utf8'));
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `cannot read the Firecracker config ${path}: ${(e as Error).message}`,
      'give a NAME.firecracker.json written by img2vm --format rootfs',
    );
  }
  const r = FirecrackerConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new Img2vmError(
      'usage',
      `${path} is not a Firecracker config: ${issue.path.join('.') || '(top)'}: ${issue.message}`,
      'give a NAME.firecracker.json written by img2vm --format rootfs',
    );
  }
  const c = r.data;
  const at = (p: string) => resolve(dirname(config), p);
  const drives = [...c.drives].sort((x, y) => Number(y.is_root_device) - Number(x.is_root_device));
  if (!drives[0]?.is_root_device) throw new Img2vmError('usage', `${path} has no root drive (is_root_device: true)`);
  return {
    config,
    kernel: at(c['boot-source'].kernel_image_path),
    initrd: c['boot-source'].initrd_path !== undefined ? at(c['boot-source'].initrd_path) : undefined,
    cmdline: c['boot-source'].boot_args,
    drives: drives.map((d) => ({ path: at(d.path_on_host), readOnly: d.is_read_only ?? false })),
    memMiB: c['machine-config']?.mem_size_mib,
    cpus: c['machine-config']?.vcpu_count,
  };
}

/** The runner configs' defaults: what a small microVM needs. */
const VM = { mem: 1024, cpus: 2 };

export const rootfs: OutputFormat = {
  id: 'rootfs',
  extensions: ['.ext4'],
  assembly: { container: 'raw', inPlace: true },
  tools: [],
  directKernel: true,
  // The file system is written in place; the companion files go beside it under temporary names, renamed with it.
  async write(i) {
    const outPath = i.plan.output.path;
    if (outPath === null) throw new Error('the rootfs output needs a path');
    const a = rootfsArtifacts(outPath, i.files.has('initrd.img'));
    const file = (name: string): string => {
      const f = i.files.get(name);
      if (!f) throw new Error(`the rootfs output needs the ${name} the earlier stages make`);
      return f;
    };
    // img2vm's init ends the VM by a reboot there: Firecracker exits on the guest's i8042 reset, not on poweroff.
    const extra = [
      ...(i.plan.guest.strategy === 'img2vm' ? ['quiet', 'img2vm.halt=reboot'] : []),
      ...(i.plan.boot.userCmdline ? [i.plan.boot.userCmdline] : []),
    ].join(' ');
    const vm = { ...VM, cmdline: extra || undefined, arch: i.plan.architecture.arch };
    const files: [string, () => Promise<void>, number][] = [
      [a.kernel, () => copyFile(file('vmlinuz'), tmp(a.kernel)), 0o644],
      [a.vmlinux, () => copyFile(file('vmlinux'), tmp(a.vmlinux)), 0o644],
      ...(a.initrd
        ? [
            [a.initrd, () => copyFile(file('initrd.img'), tmp(a.initrd!)), 0o644] as [
              string,
              () => Promise<void>,
              number,
            ],
          ]
        : []),
      [a.firecracker, () => writeFile(tmp(a.firecracker), firecrackerConfig(a, vm)), 0o644],
      [a.cloudHypervisor, () => writeFile(tmp(a.cloudHypervisor), cloudHypervisorScript(a, vm)), 0o755],
    ];
    const sideFiles: [string, string][] = [];
    for (const [dest, make, mode] of files) {
      i.env.scope.defer(`remove ${tmp(dest)}`, () => rm(tmp(dest), { force: true }));
      await make();
      await chmod(tmp(dest), mode);
      sideFiles.push([tmp(dest), dest]);
    }
    return { sideFiles };
  },
};
