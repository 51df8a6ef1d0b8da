// GRUB for BIOS without grub-install: boot.img goes into the MBR, a grub-mkimage core image after it, by writing bytes.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConversionPlan } from '../core/plan.js';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import type { DiskLayout } from '../disk/layout.js';
import type { BlockTarget } from '../disk/target.js';
import { run, which } from '../tools/index.js';
import { earlyConfig, grubCfgFile, grubMkimageArgs, grubModulesCopy } from './grub-config.js';
import type { BootLoader } from './loader.js';

export { earlyConfig, grubMkimageArgs } from './grub-config.js';

export const GRUB_PC_DIR = '/usr/lib/grub/i386-pc';

// Offsets in boot.img (GRUB's include/grub/i386/pc/boot.h).
const KERNEL_SECTOR = 0x5c;
const DRIVE_CHECK = 0x66;
const BOOT_CODE_END = 0x1b8; // disk signature and partition table follow; they are ours
// The last 12 bytes of diskboot.img (the first sector of core.img) are a blocklist {u64 start, u16 len, u16 segment}.
const BLOCKLIST_START = 512 - 12;

/** Modules built into core.img: enough to find the root by UUID and read grub.cfg from ext4 on MBR or GPT. */
export const CORE_MODULES = [
  'biosdisk',
  'part_msdos',
  'part_gpt',
  'ext2',
  'search_fs_uuid',
  'normal',
  'configfile',
  'linux',
  'gzio',
  'serial',
  'terminal',
];

/** Patches boot.img for a core image at `coreSector`: where to load from, and no floppy drive check. */
export function patchBootImage(bootImg: Buffer, coreSector: number): Buffer {
  if (bootImg.length !== 512) throw new Error(`boot.img is ${bootImg.length} bytes, expected 512`);
  const b = Buffer.from(bootImg);
  b.writeBigUInt64LE(BigInt(coreSector), KERNEL_SECTOR);
  // Some BIOSes pass a wrong drive number; GRUB's installer replaces the check's jump with two NOPs for hard disks.
  b[DRIVE_CHECK] = 0x90;
  b[DRIVE_CHECK + 1] = 0x90;
  return b.subarray(0, BOOT_CODE_END);
}

/** Points core.img's blocklist at the sectors that follow its first one. */
export function patchCoreImage(core: Buffer, coreSector: number): Buffer {
  const c = Buffer.from(core);
  const sectors = Math.ceil(c.length / 512);
  c.writeBigUInt64LE(BigInt(coreSector + 1), BLOCKLIST_START);
  c.writeUInt16LE(sectors - 1, BLOCKLIST_START + 8);
  return c;
}

/** Where core.img goes: the BIOS boot partition on GPT, the gap after the MBR otherwise. */
export function coreLocation(layout: DiskLayout): { sector: number; maxBytes: number } {
  if (layout.table === 'gpt') {
    const p = layout.partitions.find((x) => x.role === 'bios-boot');
    if (!p) throw new Error('a GPT disk booted by BIOS needs a BIOS boot partition');
    return { sector: p.start / 512, maxBytes: p.size };
  }
  const first = Math.min(...layout.partitions.map((p) => p.start));
  return { sector: 1, maxBytes: first - 512 };
}

/** Builds core.img and writes it and boot.img into the disk (boot.img's code only: the partition table is kept). */
export async function installGrubBios(
  target: BlockTarget,
  layout: DiskLayout,
  bootFsUuid: string,
  grubDir: string,
  ctx: RunContext,
): Promise<void> {
  const early = join(ctx.work, 'grub-bios-early.cfg');
  const coreOut = join(ctx.work, 'core.img');
  await writeFile(early, earlyConfig(bootFsUuid, grubDir));
  await run('grub-mkimage', grubMkimageArgs(coreOut, early, grubDir, 'i386-pc', CORE_MODULES, GRUB_PC_DIR), {
    signal: ctx.signal,
  });
  const { sector, maxBytes } = coreLocation(layout);
  const core = patchCoreImage(await readFile(coreOut), sector);
  if (core.length > maxBytes) {
    throw new Img2vmError(
      'internal',
      `GRUB core image (${core.length} bytes) does not fit in ${maxBytes} bytes`,
      'report this as a bug',
    );
  }
  const boot = patchBootImage(await readFile(join(GRUB_PC_DIR, 'boot.img')), sector);
  target.write(boot, 0);
  target.write(core, sector * 512);
}

export const grubBios: BootLoader = {
  id: 'grub-bios',
  label: 'GRUB BIOS',
  tools: ['grub-mkimage'],
  hostFiles: () => [GRUB_PC_DIR, which('grub-mkimage') ?? 'grub-mkimage'],
  files: (i) => ({
    guestFiles: [grubCfgFile(i, 'grub'), grubModulesCopy(i, GRUB_PC_DIR, 'i386-pc', 'grub-bios')],
    exports: [],
  }),
  async install(plan, target, env) {
    const { layout, boot } = plan;
    if (!layout || !boot.grubDir) throw new Error('grub-bios needs a partitioned disk and a GRUB directory');
    await installGrubBios(target, layout, bootFsUuid(plan), boot.grubDir, env);
  },
};

/** The file system GRUB reads grub.cfg from: a separate /boot, else the root. */
export function bootFsUuid(plan: ConversionPlan): string {
  const fs = plan.filesystems.find((f) => f.role === 'boot') ?? plan.filesystems.find((f) => f.role === 'root');
  if (!fs) throw new Error('the plan has no root file system yet');
  return fs.uuid;
}
