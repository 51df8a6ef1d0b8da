// Builds sector 0 of the disk: a classic MBR partition table, or the protective MBR in front of a GPT.
import type { DiskLayout } from './layout.js';

export const BOOT_CODE_SIZE = 440;
const SIGNATURE_OFFSET = 0x1b8;
const TABLE_OFFSET = 0x1be;
const ENTRY_SIZE = 16;
const MAX_ENTRIES = 4;
const PROTECTIVE_TYPE = 0xee;

// The geometry fdisk and every BIOS of the LBA era assume for disks without a real one.
const HEADS = 255;
const SECTORS = 63;
const MAX_CYLINDER = 1023;
/** Cylinder 1023, head 254, sector 63: the conventional "use the LBA fields" marker. */
const CHS_BEYOND = Buffer.from([0xfe, 0xff, 0xff]);

/**
 * CHS is computed, not always replaced by the marker: below 8 GiB it is what fdisk/sfdisk write (so our tables
 * match theirs byte for byte), and the rare old loader that still reads CHS gets a true address.
 */
export function chs(lba: number, beyond: Buffer = CHS_BEYOND): Buffer {
  const cylinder = Math.floor(lba / (HEADS * SECTORS));
  if (cylinder > MAX_CYLINDER) return Buffer.from(beyond);
  const head = Math.floor(lba / SECTORS) % HEADS;
  const sector = (lba % SECTORS) + 1;
  return Buffer.from([head, ((cylinder >> 2) & 0xc0) | sector, cylinder & 0xff]);
}

/** The MBR of an MBR-partitioned disk. bootCode is at most the 440 bytes before the disk signature. */
export function mbrPartitionSector(layout: DiskLayout, bootCode?: Buffer): Buffer {
  if (layout.table !== 'mbr') throw new Error(`mbrPartitionSector: the layout uses ${layout.table}; use protectiveMbr`);
  if (layout.partitions.length > MAX_ENTRIES)
    throw new Error(`an MBR holds ${MAX_ENTRIES} primary partitions, the layout has ${layout.partitions.length}`);
  const s = emptySector(bootCode);
  s.writeUInt32LE(layout.mbrSignature >>> 0, SIGNATURE_OFFSET);
  for (const p of layout.partitions) {
    if (p.mbrType === 0)
      throw new Error(`partition ${p.index} (${p.role}) has no MBR type; it belongs on GPT disks only`);
    const first = p.start / layout.sectorSize;
    const count = p.size / layout.sectorSize;
    if (!Number.isInteger(first) || !Number.isInteger(count) || first + count > 0x1_0000_0000) {
      throw new Error(`partition ${p.index} does not fit an MBR entry (sectors ${first}+${count})`);
    }
    writeEntry(s, p.index - 1, {
      status: p.bootable ? 0x80 : 0x00,
      chsFirst: chs(first),
      type: p.mbrType,
      chsLast: chs(first + count - 1),
      lbaFirst: first,
      lbaCount: count,
    });
  }
  return s;
}

/**
 * The protective MBR of a GPT disk: one 0xEE entry from LBA 1 over the whole disk (capped at 2^32-1 sectors).
 * Status 0x00 and disk signature 0, as the UEFI specification requires; some firmware treats a PMBR marked 0x80
 * as a legacy MBR disk, and SeaBIOS does not look at the flag.
 */
export function protectiveMbr(layout: DiskLayout, bootCode?: Buffer): Buffer {
  if (layout.table !== 'gpt') throw new Error(`protectiveMbr: the layout uses ${layout.table}; use mbrPartitionSector`);
  const s = emptySector(bootCode);
  const sectors = layout.diskSize / layout.sectorSize;
  writeEntry(s, 0, {
    status: 0x00,
    chsFirst: chs(1),
    type: PROTECTIVE_TYPE,
    // UEFI: the CHS of the last block, or 0xFFFFFF when it cannot be represented.
    chsLast: chs(sectors - 1, Buffer.from([0xff, 0xff, 0xff])),
    lbaFirst: 1,
    lbaCount: Math.min(sectors - 1, 0xffffffff),
  });
  return s;
}

interface Entry {
  status: number;
  chsFirst: Buffer;
  type: number;
  chsLast: Buffer;
  lbaFirst: number;
  lbaCount: number;
}

function writeEntry(s: Buffer, slot: number, e: Entry): void {
  const o = TABLE_OFFSET + slot * ENTRY_SIZE;
  s[o] = e.status;
  e.chsFirst.copy(s, o + 1);
  s[o + 4] = e.type;
  e.chsLast.copy(s, o + 5);
  s.writeUInt32LE(e.lbaFirst, o + 8);
  s.writeUInt32LE(e.lbaCount, o + 12);
}

function emptySector(bootCode: Buffer | undefined): Buffer {
  const s = Buffer.alloc(512);
  if (bootCode) {
    if (bootCode.length > BOOT_CODE_SIZE) {
      throw new RangeError(
        `boot code is ${bootCode.length} bytes; only the first ${BOOT_CODE_SIZE} bytes of a boot sector belong to it`,
      );
    }
    bootCode.copy(s, 0);
  }
  s[510] = 0x55;
  s[511] = 0xaa;
  return s;
}
