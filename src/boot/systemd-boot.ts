// systemd-boot for UEFI disks, installed as the guest's own kernel-install would lay it out (Boot Loader
// Specification, type #1 entries), so kernel upgrades inside the guest keep the ESP current by themselves.
import { copyFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCH, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import { systemdBootEfiFile } from '../kernel/grub.js';
import type { GuestFile } from '../core/plan.js';
import { kernelFiles, type BootLoader, type LoaderInput } from './loader.js';
import { menuTitle } from './cmdline.js';
import { kernelExports } from './direct-kernel.js';

/** Where Debian's systemd-boot-efi package puts the boot loader (in the guest, and on a Debian host). */
export const SYSTEMD_BOOT_DIR = '/usr/lib/systemd/boot/efi';
export const SYSTEMD_BOOT_EFI = `${SYSTEMD_BOOT_DIR}/systemd-bootx64.efi`;
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
  return {
    dir,
    linux: `${dir}/linux`,
    initrd: `${dir}/initrd.img-${kernelVersion}`,
    entry: `loader/entries/${ENTRY_TOKEN}-${kernelVersion}.conf`,
  };
}

/** What the BLS allows in a sort key, and what os-release allows in an ID. */
const SORT_KEY = /^[a-z0-9._-]{1,64}$/;

/**
 * One line per field (the BLS reads key, spaces, value up to the end of the line): the title from the image loses
 * its control characters, an ID that is no os-release ID gives no sort key, and the version and command line,
 * which the plan has checked, are refused here if they could still break a line.
 */
export function renderBlsEntry(e: BlsEntry): string {
  const p = blsPaths(e.kernelVersion);
  for (const [what, v] of [
    ['version', e.kernelVersion],
    ['options', e.cmdline],
  ]) {
    if (/\p{Cc}/u.test(v!))
      throw new Error(`BLS ${what} ${JSON.stringify(v)} holds a control character; the plan should have refused it`);
  }
  return [
    `title      ${menuTitle(e.title)}`,
    `version    ${e.kernelVersion}`,
    ...(e.sortKey && SORT_KEY.test(e.sortKey) ? [`sort-key   ${e.sortKey}`] : []),
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
  const f = (path: string, content: string): GuestFile => ({
    kind: 'file',
    path,
    fs: 'root',
    mode: 0o644,
    content,
    by,
  });
  return [
    f('/etc/kernel/entry-token', `${ENTRY_TOKEN}\n`),
    f('/etc/kernel/cmdline', `${cmdline}\n`),
    f('/etc/kernel/install.conf', '# Written by img2vm.\nlayout=bls\n'),
  ];
}

/** The first of the guest's copy (exported from the image) and the host's that is a regular file. */
async function pickSystemdBootEfi(guest: string | undefined): Promise<string> {
  for (const c of [guest, SYSTEMD_BOOT_EFI]) {
    if (c && (await lstat(c).catch(() => undefined))?.isFile()) return c;
  }
  throw new Img2vmError(
    'toolMissing',
    'systemd-boot is neither in the image nor on this host',
    'install it: apt-get install systemd-boot-efi (or use --bootloader grub)',
  );
}

function bootFiles(i: LoaderInput): {
  guestFiles: GuestFile[];
  exports: { path: string; as: string; optional?: boolean }[];
} {
  const by = 'systemd-boot';
  const esp = (path: string, src: { content?: string; from?: string }, note?: string): GuestFile => ({
    kind: 'file',
    path,
    fs: 'esp',
    mode: 0o644,
    ...src,
    ...(note ? { note } : {}),
    by,
  });
  const k = i.kernel;
  const p = k ? blsPaths(k.version) : undefined;
  const arch = i.arch ?? 'amd64';
  const name = efiName(arch);
  const efi = { from: `work:${name}` };
  const source = arch === 'amd64' ? "the host's" : "Debian's systemd-boot-efi, verified,";
  return {
    guestFiles: [
      ...kernelInstallFiles(i.cmdline),
      esp(`/${ARCH[arch].removablePath}`, efi, `the guest's ${name} (${source} if the image has none)`),
      esp(`/EFI/systemd/${name}`, efi, 'the same binary, where bootctl looks for it'),
      esp('/loader/loader.conf', { content: renderLoaderConf() }),
      ...(k && p
        ? [
            esp(`/${p.entry}`, {
              content: renderBlsEntry({
                title: i.title,
                kernelVersion: k.version,
                cmdline: i.cmdline,
                hasInitrd: !!k.initrdPath,
                sortKey: i.osId,
              }),
            }),
            esp(`/${p.linux}`, { from: 'work:vmlinuz' }, `the guest's ${kernelFiles(k).kernel}`),
            ...(k.initrdPath
              ? [esp(`/${p.initrd}`, { from: 'work:initrd.img' }, `the guest's ${kernelFiles(k).initrd}`)]
              : []),
          ]
        : [esp('/loader/entries/', {}, 'the entry and kernel, once the kernel is known')]),
    ],
    exports: [
      ...(k ? kernelExports(kernelFiles(k)) : []),
      { path: `${SYSTEMD_BOOT_DIR}/${name}`, as: `guest-${name}`, optional: true },
    ],
  };
}

/** systemd-boot's binary is named after the EFI architecture (systemd-bootx64.efi, systemd-bootaa64.efi). */
const efiName = (arch: GuestArch): string => `systemd-boot${arch === 'arm64' ? 'aa64' : 'x64'}.efi`;

export const systemdBoot: BootLoader = {
  id: 'systemd-boot',
  label: 'systemd-boot',
  tools: [],
  // The guest's own binary wins when the image has one; that one is part of the image's digest.
  hostFiles: () => [SYSTEMD_BOOT_EFI],
  files: bootFiles,
  /**
   * The loader binary for the ESP: the guest's own (matching its bootctl), else the host's for amd64, else
   * Debian's for the guest's architecture.
   */
  async prepare(plan, exported, env) {
    const arch = plan.architecture.arch;
    const name = efiName(arch);
    const guest = exported.get(`guest-${name}`);
    const src =
      arch === 'amd64' || (guest && (await lstat(guest).catch(() => undefined))?.isFile())
        ? await pickSystemdBootEfi(guest)
        : await systemdBootEfiFile(arch, env, { mirror: plan.guest.kernelSource?.mirror ?? undefined });
    await copyFile(src, join(env.work, name));
    return new Map();
  },
};
