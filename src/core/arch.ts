// The guest architectures img2vm makes disks for, and what each decides: firmware, boot-loader names, partition types, QEMU.
import { Img2vmError } from './errors.js';

export const GUEST_ARCHES = ['amd64', 'arm64'] as const;
export type GuestArch = (typeof GUEST_ARCHES)[number];

export interface ArchFacts {
  /** The firmware interfaces the architecture's machines boot through (arm64: UEFI only). */
  firmware: readonly ('bios' | 'uefi')[];
  /** GRUB's platform name for its EFI image. */
  grubEfi: 'x86_64-efi' | 'arm64-efi';
  /** The removable-media path UEFI firmware boots when no entry exists (UEFI specification 3.5.1.1). */
  removablePath: string;
  /** The Discoverable Partitions Specification's root partition type for this architecture. */
  rootGptType: string;
  /** The serial console the kernel writes to on the machine `img2vm run` starts (PC UART, PL011 on arm virt). */
  serialConsole: string;
  /** The QEMU system emulator and what Debian package has it. */
  qemu: 'qemu-system-x86_64' | 'qemu-system-aarch64';
  /** ELF e_machine of the architecture's executables (the init, a vmlinux). */
  elfMachine: number;
  /** The GNU triplet's first word, as uname -m prints it. */
  uname: string;
}

export const ARCH: Record<GuestArch, ArchFacts> = {
  amd64: {
    firmware: ['bios', 'uefi'],
    grubEfi: 'x86_64-efi',
    removablePath: 'EFI/BOOT/BOOTX64.EFI',
    rootGptType: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709',
    serialConsole: 'ttyS0',
    qemu: 'qemu-system-x86_64',
    elfMachine: 62,
    uname: 'x86_64',
  },
  arm64: {
    firmware: ['uefi'],
    grubEfi: 'arm64-efi',
    removablePath: 'EFI/BOOT/BOOTAA64.EFI',
    rootGptType: 'B921B045-1DF0-41C3-AF44-4C6F280D3FAE',
    serialConsole: 'ttyAMA0',
    qemu: 'qemu-system-aarch64',
    elfMachine: 183,
    uname: 'aarch64',
  },
};

export function isGuestArch(a: string): a is GuestArch {
  return (GUEST_ARCHES as readonly string[]).includes(a);
}

/** The architecture as a guest architecture, or a usage error saying where it came from and what img2vm makes. */
export function guestArch(a: string, from: string): GuestArch {
  if (isGuestArch(a)) return a;
  throw new Img2vmError(
    'usage',
    `${from} is ${a}, and img2vm makes disks for ${GUEST_ARCHES.join(' and ')} only`,
    'choose an amd64 or arm64 image (--platform linux/amd64 or linux/arm64)',
  );
}

/** The architecture whose root partition type GUID this is, if it is one of ours. */
export function archOfRootType(guid: string): GuestArch | undefined {
  return GUEST_ARCHES.find((a) => ARCH[a].rootGptType === guid.toUpperCase());
}
