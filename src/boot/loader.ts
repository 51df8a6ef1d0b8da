// The boot-loader interface: what a loader puts into the guest and the ESP (pure, part of the plan), and how it
// installs itself into the finished disk. One file per loader, registered in boot/index.ts under its CLI id.
import type { GuestArch } from '../core/arch.js';
import type { Env } from '../core/context.js';
import type { BootLoaderId, ConversionPlan, GuestFile, KernelFacts } from '../core/plan.js';
import type { BlockTarget } from '../disk/target.js';
import type { ToolName } from '../tools/index.js';

export interface LoaderInput {
  rootUuid: string;
  /** The file system GRUB reads its config from: /boot's own when separate, else the root. */
  bootFsUuid: string;
  separateBoot: boolean;
  /** GRUB's directory on that file system (/grub on a separate /boot, /boot/grub on the root). */
  grubDir: string;
  /** The kernel command line for loaders that pass one. */
  cmdline: string;
  /** The menu title (the distribution's pretty name). */
  title: string;
  /** os-release ID, for sorting boot entries. */
  osId?: string;
  /** null until the kernel is known (before the guest build). */
  kernel: KernelFacts | null;
  /** The guest's architecture (default amd64). */
  arch?: GuestArch;
}

export interface LoaderFiles {
  guestFiles: GuestFile[];
  /** Guest files copied out before the file system is made: path in the guest → name in the work directory. */
  exports: { path: string; as: string; optional?: boolean }[];
}

export interface BootLoader {
  id: BootLoaderId;
  /** A few words for the stage line, e.g. "GRUB BIOS". */
  label: string;
  /** Host tools install() runs (checked before any work). */
  tools: readonly ToolName[];
  /** The host files and trees its bytes come from (GRUB's modules, grub-mkimage): converted disks are keyed by them. */
  hostFiles(): string[];
  files(input: LoaderInput): LoaderFiles;
  /**
   * Makes what its ESP files come from (work:NAME), once the guest files are written: from the plan and the files
   * exported from the guest (by name); returns the files it made that an output takes (by name).
   */
  prepare?(plan: ConversionPlan, exported: ReadonlyMap<string, string>, env: Env): Promise<ReadonlyMap<string, string>>;
  /** Writes boot code into the disk once its partitions and file systems exist (the boot stage). */
  install?(plan: ConversionPlan, target: BlockTarget, env: Env): Promise<void>;
}

/** The kernel's and initrd's own files in the guest (not the links GRUB may boot through). */
export function kernelFiles(k: KernelFacts): { kernel: string; initrd?: string } {
  return {
    kernel: k.kernelFile ?? `/boot/vmlinuz-${k.version}`,
    initrd: k.initrdPath ? (k.initrdFile ?? `/boot/initrd.img-${k.version}`) : undefined,
  };
}
