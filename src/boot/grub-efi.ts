// GRUB for UEFI without grub-install: a grub-mkimage EFI binary at the removable-media path of the ESP.
import { cp, writeFile } from 'node:fs/promises';
import { freshDirInRoot } from '../guest/configure.js';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { fatCopy } from '../disk/fat.js';
import { run } from '../tools/index.js';
import { earlyConfig, grubMkimageArgs } from './grub-bios.js';

export const GRUB_EFI_DIR = '/usr/lib/grub/x86_64-efi';
/** Firmware looks here when no boot entry exists (UEFI spec, removable media path). */
export const REMOVABLE_PATH = 'EFI/BOOT/BOOTX64.EFI';

export const EFI_MODULES = ['part_gpt', 'part_msdos', 'ext2', 'fat', 'search_fs_uuid', 'normal', 'configfile', 'linux', 'gzio', 'serial', 'terminal', 'efi_gop', 'all_video'];

/** Copies GRUB's EFI modules into the root file system, for modules grub.cfg loads at run time. */
export async function stageGrubEfiFiles(root: string): Promise<void> {
  const dest = await freshDirInRoot(root, 'boot/grub/x86_64-efi');
  await cp(GRUB_EFI_DIR, dest, { recursive: true, filter: (src) => src === GRUB_EFI_DIR || /\.(mod|lst)$/.test(src) });
}

/** Builds BOOTX64.EFI (finds the boot file system by UUID, then reads its grub.cfg) and copies it into the ESP. */
export async function installGrubEfi(image: string, espOffset: number, bootFsUuid: string, grubDir: string, ctx: RunContext): Promise<void> {
  const early = join(ctx.work, 'grub-efi-early.cfg');
  const efi = join(ctx.work, 'BOOTX64.EFI');
  await writeFile(early, earlyConfig(bootFsUuid, grubDir));
  await run('grub-mkimage', grubMkimageArgs(efi, early, grubDir, 'x86_64-efi', EFI_MODULES, GRUB_EFI_DIR), { signal: ctx.signal });
  await fatCopy(image, espOffset, [{ src: efi, dest: REMOVABLE_PATH }], ctx);
}
