// A disk's partition layout as data: the types planning fills in (disk/layout.ts) and the table writers read.

export type BootMode = 'bios' | 'uefi' | 'hybrid';
export type PartitionTableKind = 'mbr' | 'gpt';
export type PartitionRole = 'bios-boot' | 'esp' | 'boot' | 'root';

export interface PartitionPlan {
  /** 1-based, as in /dev/vda1 and PARTUUID suffixes. */
  index: number;
  role: PartitionRole;
  /** The GPT partition name; not stored on MBR disks. */
  name: string;
  /** Bytes from the start of the disk, a multiple of 1 MiB. */
  start: number;
  /** Bytes, a multiple of 1 MiB. */
  size: number;
  /** Upper-case GUID string, used on GPT disks. */
  gptType: string;
  /** Used on MBR disks; 0 for roles that only exist on GPT (bios-boot). */
  mbrType: number;
  /** Partition unique GUID (GPT); lower-case. */
  guid: string;
  /** MBR: status 0x80. GPT: attribute bit 2 (legacy BIOS bootable); the planner never sets it on GPT. */
  bootable: boolean;
}

export interface DiskLayout {
  table: PartitionTableKind;
  sectorSize: 512;
  diskSize: number;
  /** GPT disk GUID; drawn for MBR disks too so the random stream does not depend on the table kind. */
  diskGuid: string;
  /** MBR disk signature (uint32, never 0); the protective MBR of a GPT disk stores 0 instead, as UEFI requires. */
  mbrSignature: number;
  partitions: PartitionPlan[];
}
