// Plans the partition layout of a disk as pure data (offsets, sizes, type GUIDs, unique GUIDs); writers turn it into bytes.
import { Img2vmError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { alignUp, formatSize, MiB } from '../core/units.js';
import { ARCH, type GuestArch } from '../core/arch.js';

export type { BootMode, DiskLayout, PartitionPlan, PartitionRole, PartitionTableKind } from '../core/layout.js';
import type { BootMode, DiskLayout, PartitionPlan, PartitionRole, PartitionTableKind } from '../core/layout.js';

export interface LayoutInput {
  boot: BootMode;
  /** Default: mbr for bios, gpt for uefi and hybrid. */
  table?: PartitionTableKind;
  /** The least number of bytes the root file system needs. */
  rootSize: number;
  /** A separate /boot partition of this many bytes, placed before root. */
  bootPartitionSize?: number;
  /** Default DEFAULT_ESP_SIZE. */
  espSize?: number;
  /** The explicit --size; root takes all the space the other partitions leave. */
  diskSize?: number;
  random: Random;
  /** The guest's architecture, whose root partition type the GPT gets (default amd64). */
  arch?: GuestArch;
}

export const SECTOR_SIZE = 512;
/** Partitions start and end on 1 MiB boundaries: good for every physical sector and erase-block size, and what fdisk does. */
export const ALIGNMENT = MiB;

/**
 * 64 MiB: the ESP holds GRUB's removable-path EFI binary (a few MiB), so this is over ten times what it needs,
 * and it is still large enough for FAT32 (mkfs.fat -F 32 fits more than 65525 one-sector clusters), which the
 * UEFI specification asks for on fixed disks. Whoever puts bigger things there (a UKI) should pass espSize.
 */
export const DEFAULT_ESP_SIZE = 64 * MiB;
/** GRUB's core.img with the modules we embed is well under 200 KiB; 1 MiB is the customary size. */
export const BIOS_BOOT_SIZE = MiB;

/** GPT needs 33 sectors at the end (32 of entries, 1 backup header); kept aligned, that is 1 MiB. */
const GPT_TAIL_SECTORS = 33;
const GPT_TAIL = alignUp(GPT_TAIL_SECTORS * SECTOR_SIZE, ALIGNMENT);
/** MBR fields are 32-bit sector numbers. */
const MBR_MAX_SECTORS = 0xffffffff;

export const GPT_TYPE = {
  biosBoot: '21686148-6449-6E6F-744E-656564454649',
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  /**
   * /boot is plain "Linux filesystem" rather than XBOOTLDR: ours is ext4 mounted through fstab and read by GRUB,
   * while an XBOOTLDR partition tells kernel-install/bootctl and systemd-gpt-auto-generator that it holds
   * Boot Loader Specification entries, which would send kernel updates where GRUB does not look.
   */
  linuxFilesystem: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
  /** Discoverable Partitions Specification: root for x86-64 and for arm64, so systemd can find it without root=. */
  rootX86_64: ARCH.amd64.rootGptType,
  rootArm64: ARCH.arm64.rootGptType,
} as const;

export const MBR_TYPE = { linux: 0x83, esp: 0xef, none: 0x00 } as const;

interface Wanted {
  role: PartitionRole;
  name: string;
  size: number;
  gptType: string;
  mbrType: number;
  bootable: boolean;
}

export function planLayout(input: LayoutInput): DiskLayout {
  const table = input.table ?? (input.boot === 'bios' ? 'mbr' : 'gpt');
  positive('rootSize', input.rootSize);
  if (input.bootPartitionSize !== undefined) positive('bootPartitionSize', input.bootPartitionSize);
  if (input.espSize !== undefined) positive('espSize', input.espSize);
  if (input.diskSize !== undefined) positive('diskSize', input.diskSize);

  const biosBoots = input.boot !== 'uefi';
  const efiBoots = input.boot !== 'bios';
  // The MBR active flag goes where GRUB reads from, for BIOSes that refuse a disk without one; on GPT nothing we install reads it (see gpt.ts).
  const activeRole: PartitionRole = input.bootPartitionSize !== undefined ? 'boot' : 'root';
  const flag = (role: PartitionRole): boolean => table === 'mbr' && biosBoots && role === activeRole;

  const wanted: Wanted[] = [];
  // GRUB's core.img needs a home on GPT; on MBR it lives in the gap between the MBR and the first partition.
  if (biosBoots && table === 'gpt') {
    wanted.push({
      role: 'bios-boot',
      name: 'BIOS boot',
      size: BIOS_BOOT_SIZE,
      gptType: GPT_TYPE.biosBoot,
      mbrType: MBR_TYPE.none,
      bootable: false,
    });
  }
  if (efiBoots) {
    wanted.push({
      role: 'esp',
      name: 'EFI System',
      size: input.espSize ?? DEFAULT_ESP_SIZE,
      gptType: GPT_TYPE.esp,
      mbrType: MBR_TYPE.esp,
      bootable: false,
    });
  }
  if (input.bootPartitionSize !== undefined) {
    wanted.push({
      role: 'boot',
      name: 'boot',
      size: input.bootPartitionSize,
      gptType: GPT_TYPE.linuxFilesystem,
      mbrType: MBR_TYPE.linux,
      bootable: flag('boot'),
    });
  }
  wanted.push({
    role: 'root',
    name: 'root',
    size: input.rootSize,
    gptType: ARCH[input.arch ?? 'amd64'].rootGptType,
    mbrType: MBR_TYPE.linux,
    bootable: flag('root'),
  });

  const tail = table === 'gpt' ? GPT_TAIL : 0;
  const needed = ALIGNMENT + wanted.reduce((sum, w) => sum + alignUp(w.size, ALIGNMENT), 0) + tail;

  let diskSize = needed;
  if (input.diskSize !== undefined) {
    // qemu-img rounds sizes up to whole sectors too, and a GPT backup header must sit in a whole last sector.
    diskSize = alignUp(input.diskSize, SECTOR_SIZE);
    if (diskSize < needed) {
      throw new Img2vmError(
        'sizeTooSmall',
        `--size ${formatSize(input.diskSize)} is too small: the image needs at least ${formatSize(needed)}`,
        `give --size ${formatSize(needed)} or more, or leave it out to fit the content`,
      );
    }
  }
  // Partitions end on a 1 MiB boundary even when --size is not a multiple of 1 MiB; the rest stays unallocated.
  const end = alignDown(diskSize - (table === 'gpt' ? GPT_TAIL_SECTORS * SECTOR_SIZE : 0), ALIGNMENT);

  if (table === 'mbr' && end / SECTOR_SIZE > MBR_MAX_SECTORS) {
    throw new Img2vmError(
      'usage',
      `an MBR partition table cannot describe a ${formatSize(diskSize)} disk (its limit is ${formatSize(MBR_MAX_SECTORS * SECTOR_SIZE)})`,
      'use a GPT partition table (--boot uefi or hybrid), or a smaller --size',
    );
  }

  // Fixed draw order (disk GUID, signature, then partitions by index) keeps --seed output stable.
  const random = input.random;
  const diskGuid = random.uuid();
  const mbrSignature = drawSignature(random);

  const partitions: PartitionPlan[] = [];
  let start = ALIGNMENT;
  wanted.forEach((w, i) => {
    const size = w.role === 'root' ? end - start : alignUp(w.size, ALIGNMENT);
    partitions.push({
      index: i + 1,
      role: w.role,
      name: w.name,
      start,
      size,
      gptType: w.gptType,
      mbrType: w.mbrType,
      guid: random.uuid(),
      bootable: w.bootable,
    });
    start += size;
  });

  return { table, sectorSize: SECTOR_SIZE, diskSize, diskGuid, mbrSignature, partitions };
}

export function partitionByRole(l: DiskLayout, role: PartitionRole): PartitionPlan | undefined {
  return l.partitions.find((p) => p.role === role);
}

function drawSignature(random: Random): number {
  // 0 means "no signature" to Windows and makes Linux PARTUUIDs (SIGNATURE-NN) ambiguous.
  for (;;) {
    const n = random.bytes(4).readUInt32LE(0);
    if (n !== 0) return n;
  }
}

function positive(what: string, n: number): void {
  // These come from the program, not straight from the user: a bad value is a bug, not a usage error.
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new RangeError(`planLayout: ${what} must be a positive integer, got ${n}`);
}

function alignDown(n: number, a: number): number {
  return Math.floor(n / a) * a;
}
