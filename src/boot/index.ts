// The boot loaders, by the id the plan names (grub-bios, grub-efi, systemd-boot, direct-kernel).
import type { BootLoaderId } from '../core/plan.js';
import { directKernel } from './direct-kernel.js';
import { grubBios } from './grub-bios.js';
import { grubEfi } from './grub-efi.js';
import type { BootLoader } from './loader.js';
import { systemdBoot } from './systemd-boot.js';

export const BOOT_LOADERS: Record<BootLoaderId, BootLoader> = {
  'grub-bios': grubBios,
  'grub-efi': grubEfi,
  'systemd-boot': systemdBoot,
  'direct-kernel': directKernel,
};
