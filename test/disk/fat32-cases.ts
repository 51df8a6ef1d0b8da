// Inputs the FAT32 writer's tests share: a small systemd-boot-like ESP, its options and its golden digest.
import { MiB } from '../../src/core/units.js';
import type { Fat32File, Fat32Options } from '../../src/disk/fat32.js';

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** 2 MiB into the disk, so that every test also proves the offset is honoured. */
export const OPTS: Fat32Options = {
  offset: 2 * MiB,
  size: 64 * MiB,
  volumeId: 0xc0ffee42,
  label: 'EFI',
  epoch: 1700000001,
};

/** The ESP img2vm writes for systemd-boot, in small; the kernel comes as a stream. */
export const SMALL: Fat32File[] = [
  { path: 'EFI/BOOT/BOOTX64.EFI', content: text('MZ not really an EFI binary') },
  { path: 'EFI/systemd/systemd-bootx64.efi', content: text('MZ sd-boot') },
  { path: 'loader/loader.conf', content: text('timeout 0\ndefault img2vm-*\n') },
  {
    path: 'loader/entries/img2vm-6.1.0-28-cloud-amd64.conf',
    content: text('title img2vm\nlinux /vmlinuz-6.1.0-28-cloud-amd64\n'),
  },
  {
    path: 'vmlinuz-6.1.0-28-cloud-amd64',
    content: {
      size: 3 * 65536 + 7,
      async *read() {
        for (let i = 0; i < 3; i++) yield new Uint8Array(65536).fill(i + 1);
        yield new Uint8Array(7).fill(9);
      },
    },
  },
];

/** sha256 of the 64 MiB of OPTS/SMALL. Change it only after fsck.fat and mtools accept the new bytes (fat32.tools.test.ts). */
export const GOLDEN_SMALL = '36f247db2b290b0cbec077fa01a8ea6e3beaa78223aed27651f825b546912b92';
