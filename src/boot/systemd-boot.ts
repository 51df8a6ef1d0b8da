// systemd-boot for UEFI disks, installed as the guest's own kernel-install would lay it out (Boot Loader
// Specification, type #1 entries), so kernel upgrades inside the guest keep the ESP current by themselves.
import { lstat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConversionRun } from '../core/conversion.js';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import type { GuestFile } from '../core/plan.js';
import { fatCopy } from '../disk/fat.js';
import { partitionByRole } from '../disk/layout.js';
import { resolveInRoot, writeGuestFiles } from '../rootfs/inroot.js';
import { REMOVABLE_PATH } from './grub-efi.js';
import { kernelFiles, type BootLoader, type LoaderInput } from './loader.js';
import { kernelExports } from './direct-kernel.js';

/** Where Debian's systemd-boot-efi package puts the boot loader (in the guest, and on a Debian host). */
export const SYSTEMD_BOOT_EFI = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';
/** The entry token: names the kernel directory on the ESP and prefixes the entry file. */
export const ENTRY_TOKEN = 'img2vm';
/** Room for three Debian cloud kernels with their initrds (about 30 MB each) besides the loader: upgrades need two at once. */
export const SYSTEMD_BOOT_ESP_SIZE = 256 * 1024 * 1024;

export interface BlsEntry {
  title: string;
  kernelVersion: string;
  cmdline: string;
  hasInitrd: boolean;
  /** os-release ID, as kernel-install writes it, so img2vm's entry and the guest's later ones sort together. */
  sortKey?: string;
}

/** Paths on the ESP, as kernel-install (layout=bls) names them. */
export function blsPaths(kernelVersion: string): { dir: string; linux: string; initrd: string; entry: string } {
  const dir = `${ENTRY_TOKEN}/${kernelVersion}`;
  return { dir, linux: `${dir}/linux`, initrd: `${dir}/initrd.img-${kernelVersion}`, entry: `loader/entries/${ENTRY_TOKEN}-${kernelVersion}.conf` };
}

export function renderBlsEntry(e: BlsEntry): string {
  const p = blsPaths(e.kernelVersion);
  return [
    `title      ${e.title}`,
    `version    ${e.kernelVersion}`,
    ...(e.sortKey ? [`sort-key   ${e.sortKey}`] : []),
    `options    ${e.cmdline}`,
    `linux      /${p.linux}`,
    ...(e.hasInitrd ? [`initrd     /${p.initrd}`] : []),
    '',
  ].join('\n');
}

/** No menu unless a key is held (as GRUB's timeout=0); the newest entry by version boots by default. */
export function renderLoaderConf(): string {
  return ['# Written by img2vm.', 'timeout 0', 'editor no', ''].join('\n');
}

/**
 * Tells the guest's kernel-install (systemd-boot's postinst and initramfs hooks run it) to lay new kernels out the
 * way img2vm did: same entry token, same command line, BLS layout.
 */
export function kernelInstallFiles(cmdline: string, by = 'systemd-boot'): GuestFile[] {
  const f = (path: string, content: string): GuestFile => ({ kind: 'file', path, fs: 'root', mode: 0o644, content, by });
  return [f('/etc/kernel/entry-token', `${ENTRY_TOKEN}\n`), f('/etc/kernel/cmdline', `${cmdline}\n`), f('/etc/kernel/install.conf', '# Written by img2vm.\nlayout=bls\n')];
}

/** Writes kernelInstallFiles into a staged root (as the configure step does from the plan). */
export async function configureKernelInstall(root: string, cmdline: string): Promise<void> {
  writeGuestFiles(root, kernelInstallFiles(cmdline));
}

/** The guest's own systemd-boot binary (matching its bootctl), else the host's. */
export async function findSystemdBootEfi(root: string): Promise<string> {
  return pickSystemdBootEfi(resolveInRoot(root, SYSTEMD_BOOT_EFI.slice(1), true));
}

/** The first of the guest's copy (exported from the image) and the host's that is a regular file. */
async function pickSystemdBootEfi(guest: string | undefined): Promise<string> {
  for (const c of [guest, SYSTEMD_BOOT_EFI]) {
    if (c && (await lstat(c).catch(() => undefined))?.isFile()) return c;
  }
  throw new Img2vmError('toolMissing', 'systemd-boot is neither in the image nor on this host', 'install it: apt-get install systemd-boot-efi (or use --bootloader grub)');
}

export interface SystemdBootFiles {
  efi: string;
  kernel: string;
  initrd?: string;
  loaderConf: string;
  entry: string;
}

/** The ESP's content: the loader at the removable path and where bootctl looks for it, the entry, kernel and initrd. */
export function systemdBootEspFiles(kernelVersion: string, f: SystemdBootFiles): { src: string; dest: string }[] {
  const p = blsPaths(kernelVersion);
  return [
    { src: f.efi, dest: REMOVABLE_PATH },
    { src: f.efi, dest: 'EFI/systemd/systemd-bootx64.efi' },
    { src: f.loaderConf, dest: 'loader/loader.conf' },
    { src: f.entry, dest: p.entry },
    { src: f.kernel, dest: p.linux },
    ...(f.initrd ? [{ src: f.initrd, dest: p.initrd }] : []),
  ];
}

export async function installSystemdBoot(image: string, espOffset: number, kernelVersion: string, f: SystemdBootFiles, ctx: RunContext): Promise<void> {
  await fatCopy(image, espOffset, systemdBootEspFiles(kernelVersion, f), ctx);
}

function bootFiles(i: LoaderInput): { guestFiles: GuestFile[]; exports: { path: string; as: string; optional?: boolean }[] } {
  const by = 'systemd-boot';
  const esp = (path: string, content?: string, note?: string): GuestFile => ({ kind: 'file', path, fs: 'esp', mode: 0o644, ...(content !== undefined ? { content } : {}), ...(note ? { note } : {}), by });
  const k = i.kernel;
  const p = k ? blsPaths(k.version) : undefined;
  return {
    guestFiles: [
      ...kernelInstallFiles(i.cmdline),
      esp(`/${REMOVABLE_PATH}`, undefined, "the guest's systemd-bootx64.efi (the host's if the image has none)"),
      esp('/EFI/systemd/systemd-bootx64.efi', undefined, 'the same binary, where bootctl looks for it'),
      esp('/loader/loader.conf', renderLoaderConf()),
      ...(k && p
        ? [
            esp(`/${p.entry}`, renderBlsEntry({ title: i.title, kernelVersion: k.version, cmdline: i.cmdline, hasInitrd: !!k.initrdPath, sortKey: i.osId })),
            esp(`/${p.linux}`, undefined, `the guest's ${kernelFiles(k).kernel}`),
            ...(k.initrdPath ? [esp(`/${p.initrd}`, undefined, `the guest's ${kernelFiles(k).initrd}`)] : []),
          ]
        : [esp('/loader/entries/', undefined, 'the entry and kernel, once the kernel is known')]),
    ],
    exports: [...(k ? kernelExports(kernelFiles(k)) : []), { path: SYSTEMD_BOOT_EFI, as: 'systemd-bootx64.efi', optional: true }],
  };
}

export const systemdBoot: BootLoader = {
  id: 'systemd-boot',
  label: 'systemd-boot',
  tools: ['mmd', 'mcopy'],
  files: bootFiles,
  async install(r: ConversionRun) {
    const esp = r.plan.layout && partitionByRole(r.plan.layout, 'esp');
    const k = r.plan.kernel;
    if (!esp || !k) throw new Error('systemd-boot needs an ESP and a kernel');
    const content = (suffix: string) => r.plan.guestFiles.find((f) => f.fs === 'esp' && f.path.endsWith(suffix))?.content ?? '';
    const loaderConf = join(r.ctx.work, 'loader.conf');
    const entry = join(r.ctx.work, 'bls-entry.conf');
    await writeFile(loaderConf, content('/loader/loader.conf'));
    await writeFile(entry, content(`/${blsPaths(k.version).entry}`));
    await installSystemdBoot(r.rawPath, esp.start, k.version, {
      efi: await pickSystemdBootEfi(r.exported.get('systemd-bootx64.efi')),
      kernel: r.exported.get('vmlinuz')!,
      initrd: r.exported.get('initrd.img'),
      loaderConf,
      entry,
    }, r.ctx);
  },
};
