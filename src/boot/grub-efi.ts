// GRUB for UEFI without grub-install: a grub-mkimage EFI binary at the removable-media path of the ESP, for the
// guest's architecture (x86_64-efi from the host's GRUB; arm64-efi from Debian's package, fetched and verified).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCH, type GuestArch } from '../core/arch.js';
import type { Env, RunContext } from '../core/context.js';
import type { ConversionPlan } from '../core/plan.js';
import { grubEfiModuleDir } from '../kernel/grub.js';
import { run, which } from '../tools/index.js';
import { bootFsUuid } from './grub-bios.js';
import { earlyConfig, grubCfgFile, grubMkimageArgs, grubModulesCopy } from './grub-config.js';
import type { BootLoader } from './loader.js';

export const GRUB_EFI_DIR = '/usr/lib/grub/x86_64-efi';
/** Firmware looks here when no boot entry exists (UEFI spec, removable media path); x86-64's name. */
export const REMOVABLE_PATH = ARCH.amd64.removablePath;

export const EFI_MODULES = [
  'part_gpt',
  'part_msdos',
  'ext2',
  'fat',
  'search_fs_uuid',
  'normal',
  'configfile',
  'linux',
  'gzio',
  'serial',
  'terminal',
  'efi_gop',
  'all_video',
];

/**
 * arm64: every module grub.cfg uses is built into the image (GRUB then needs no module directory in the guest, so
 * nothing fetched from the archive has to be copied into it); its console is the firmware's, which is serial.
 */
export const EFI_MODULES_ARM64 = EFI_MODULES.filter((m) => m !== 'serial').concat(['echo', 'test']);

/** Builds the EFI binary (finds the boot file system by UUID, then reads its grub.cfg) in the work directory. */
export async function makeGrubEfi(
  bootFsUuid: string,
  grubDir: string,
  ctx: RunContext,
  arch: GuestArch = 'amd64',
  moduleDir: string = GRUB_EFI_DIR,
): Promise<string> {
  const early = join(ctx.work, 'grub-efi-early.cfg');
  const efi = join(ctx.work, efiWorkName(arch));
  await writeFile(early, earlyConfig(bootFsUuid, grubDir));
  const modules = arch === 'amd64' ? EFI_MODULES : EFI_MODULES_ARM64;
  await run('grub-mkimage', grubMkimageArgs(efi, early, grubDir, ARCH[arch].grubEfi, modules, moduleDir), {
    signal: ctx.signal,
  });
  return efi;
}

/** The work file the ESP's binary comes from, named after the removable path's file name. */
const efiWorkName = (arch: GuestArch): string => `grub-${ARCH[arch].removablePath.split('/').pop()!}`;

/** The GRUB module directory for the plan's architecture: the host's for amd64, Debian's package for arm64. */
async function moduleDirFor(plan: ConversionPlan, env: Env): Promise<string> {
  if (plan.architecture.arch === 'amd64') return GRUB_EFI_DIR;
  const ks = plan.guest.kernelSource;
  return grubEfiModuleDir(plan.architecture.arch, env, { mirror: ks?.mirror ?? undefined });
}

export const grubEfi: BootLoader = {
  id: 'grub-efi',
  label: 'GRUB EFI',
  tools: ['grub-mkimage'],
  hostFiles: () => [GRUB_EFI_DIR, which('grub-mkimage') ?? 'grub-mkimage'],
  files: (i) => {
    const arch = i.arch ?? 'amd64';
    const platform = ARCH[arch].grubEfi;
    return {
      guestFiles: [
        grubCfgFile(i, 'grub'),
        ...(arch === 'amd64' ? [grubModulesCopy(i, GRUB_EFI_DIR, platform, 'grub-efi')] : []),
        {
          kind: 'file',
          path: `/${ARCH[arch].removablePath}`,
          fs: 'esp',
          from: `work:${efiWorkName(arch)}`,
          note:
            arch === 'amd64'
              ? `grub-mkimage ${platform} image that finds the boot file system by UUID`
              : `grub-mkimage ${platform} image (modules from Debian's grub-efi-${arch}-bin, verified) that finds the boot file system by UUID`,
          by: 'grub-efi',
        },
      ],
      exports: [],
    };
  },
  async prepare(plan, _exported, env) {
    if (!plan.boot.grubDir) throw new Error('grub-efi needs a GRUB directory');
    const dir = await moduleDirFor(plan, env);
    await makeGrubEfi(bootFsUuid(plan), plan.boot.grubDir, env, plan.architecture.arch, dir);
    return new Map();
  },
};
