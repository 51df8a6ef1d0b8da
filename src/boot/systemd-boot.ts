// systemd-boot for UEFI disks, installed as the guest's own kernel-install would lay it out (Boot Loader
// Specification, type #1 entries), so kernel upgrades inside the guest keep the ESP current by themselves.
import { access, constants } from 'node:fs/promises';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { fatCopy } from '../disk/fat.js';
import { resolveInRoot, writeInRoot } from '../guest/configure.js';
import { REMOVABLE_PATH } from './grub-efi.js';

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
export async function configureKernelInstall(root: string, cmdline: string): Promise<void> {
  await writeInRoot(root, 'etc/kernel/entry-token', `${ENTRY_TOKEN}\n`);
  await writeInRoot(root, 'etc/kernel/cmdline', `${cmdline}\n`);
  await writeInRoot(root, 'etc/kernel/install.conf', '# Written by img2vm.\nlayout=bls\n');
}

/** The guest's own systemd-boot binary (matching its bootctl), else the host's. */
export async function findSystemdBootEfi(root: string): Promise<string> {
  const candidates = [await resolveInRoot(root, SYSTEMD_BOOT_EFI.slice(1), true), SYSTEMD_BOOT_EFI];
  for (const c of candidates) {
    try {
      await access(c, constants.R_OK);
      return c;
    } catch {
      /* next */
    }
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
