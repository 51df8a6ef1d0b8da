// GRUB for UEFI without grub-install: a grub-mkimage EFI binary at the removable-media path of the ESP.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { run, which } from '../tools/index.js';
import { bootFsUuid } from './grub-bios.js';
import { earlyConfig, grubCfgFile, grubMkimageArgs, grubModulesCopy } from './grub-config.js';
import type { BootLoader } from './loader.js';

export const GRUB_EFI_DIR = '/usr/lib/grub/x86_64-efi';
/** Firmware looks here when no boot entry exists (UEFI spec, removable media path). */
export const REMOVABLE_PATH = 'EFI/BOOT/BOOTX64.EFI';

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

/** Builds BOOTX64.EFI (finds the boot file system by UUID, then reads its grub.cfg) in the work directory. */
export async function makeGrubEfi(bootFsUuid: string, grubDir: string, ctx: RunContext): Promise<string> {
  const early = join(ctx.work, 'grub-efi-early.cfg');
  const efi = join(ctx.work, EFI_WORK_NAME);
  await writeFile(early, earlyConfig(bootFsUuid, grubDir));
  await run('grub-mkimage', grubMkimageArgs(efi, early, grubDir, 'x86_64-efi', EFI_MODULES, GRUB_EFI_DIR), {
    signal: ctx.signal,
  });
  return efi;
}

const EFI_WORK_NAME = 'grub-BOOTX64.EFI';

export const grubEfi: BootLoader = {
  id: 'grub-efi',
  label: 'GRUB EFI',
  tools: ['grub-mkimage'],
  hostFiles: () => [GRUB_EFI_DIR, which('grub-mkimage') ?? 'grub-mkimage'],
  files: (i) => ({
    guestFiles: [
      grubCfgFile(i, 'grub'),
      grubModulesCopy(i, GRUB_EFI_DIR, 'x86_64-efi', 'grub-efi'),
      {
        kind: 'file',
        path: `/${REMOVABLE_PATH}`,
        fs: 'esp',
        from: `work:${EFI_WORK_NAME}`,
        note: 'grub-mkimage x86_64-efi image that finds the boot file system by UUID',
        by: 'grub-efi',
      },
    ],
    exports: [],
  }),
  async prepare(plan, _exported, env) {
    if (!plan.boot.grubDir) throw new Error('grub-efi needs a GRUB directory');
    await makeGrubEfi(bootFsUuid(plan), plan.boot.grubDir, env);
    return new Map();
  },
};
