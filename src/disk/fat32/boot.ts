// The FAT32 reserved sectors: boot sector with BPB, FSInfo, their backups, and a BIOS stub that says it is not bootable.
import {
  BACKUP_BOOT_SECTOR,
  FAT_COUNT,
  FSINFO_SECTOR,
  RESERVED_SECTORS,
  ROOT_CLUSTER,
  SECTOR,
  type Fat32Geometry,
} from './geometry.js';

export interface BootFields {
  geometry: Fat32Geometry;
  /** Sectors before the file system on its disk (its partition's first LBA). */
  hiddenSectors: number;
  volumeId: number;
  /** Upper case, at most 11 characters; '' for none. */
  label: string;
  freeClusters: number;
  /** The first free cluster, or undefined when none is free. */
  nextFree: number | undefined;
}

/** Shown by a BIOS that tries to boot the partition. */
const MESSAGE = 'This is an EFI system partition, not a BIOS boot sector.\r\n';
const CODE_AT = 0x5a;
const LOAD_ADDRESS = 0x7c00;

/**
 * 16-bit real-mode code at byte 0x5A, reached by the jump at byte 0: print MESSAGE through the video BIOS, then
 * halt for good. It addresses the message absolutely with DS = 0, so it works whether the BIOS entered at
 * 0000:7C00 or 07C0:0000.
 */
function stub(): Buffer {
  const msgAt = LOAD_ADDRESS + CODE_AT + 26;
  const code = [
    0x31,
    0xc0, //             xor ax, ax
    0x8e,
    0xd8, //             mov ds, ax
    0xbe,
    msgAt & 0xff,
    msgAt >> 8, // mov si, message
    0xfc, //                   cld
    0xac, //          next:    lodsb
    0x84,
    0xc0, //             test al, al
    0x74,
    0x09, //             jz stop
    0xb4,
    0x0e, //             mov ah, 0Eh      (teletype output)
    0xbb,
    0x07,
    0x00, //       mov bx, 0007h    (page 0, grey)
    0xcd,
    0x10, //             int 10h
    0xeb,
    0xf2, //             jmp next
    0xfa, //          stop:    cli
    0xf4, //                   hlt
    0xeb,
    0xfc, //             jmp stop         (an NMI wakes hlt)
  ];
  return Buffer.concat([Buffer.from(code), Buffer.from(MESSAGE + '\0', 'latin1')]);
}

function labelBytes(label: string): string {
  return (label === '' ? 'NO NAME' : label).padEnd(11, ' ');
}

export function bootSector(f: BootFields): Buffer {
  const g = f.geometry;
  const b = Buffer.alloc(SECTOR);
  b.set([0xeb, CODE_AT - 2, 0x90], 0);
  b.write('IMG2VM  ', 3, 'latin1');
  b.writeUInt16LE(SECTOR, 11);
  b[13] = g.sectorsPerCluster;
  b.writeUInt16LE(RESERVED_SECTORS, 14);
  b[16] = FAT_COUNT;
  // 17: root entries, 19: 16-bit sector count, 22: 16-bit FAT size: all 0 on FAT32.
  b[21] = 0xf8; // fixed disk
  b.writeUInt16LE(g.sectorsPerTrack, 24);
  b.writeUInt16LE(g.heads, 26);
  b.writeUInt32LE(f.hiddenSectors, 28);
  b.writeUInt32LE(g.totalSectors, 32);
  b.writeUInt32LE(g.fatSectors, 36);
  // 40: flags 0 = both FATs are kept in step; 42: version 0.0.
  b.writeUInt32LE(ROOT_CLUSTER, 44);
  b.writeUInt16LE(FSINFO_SECTOR, 48);
  b.writeUInt16LE(BACKUP_BOOT_SECTOR, 50);
  b[64] = 0x80; // BIOS drive number of the first hard disk
  b[66] = 0x29; // the next three fields are present
  b.writeUInt32LE(f.volumeId >>> 0, 67);
  b.write(labelBytes(f.label), 71, 'latin1');
  b.write('FAT32   ', 82, 'latin1');
  const code = stub();
  if (CODE_AT + code.length > 510) throw new RangeError('boot stub too long');
  code.copy(b, CODE_AT);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

export function fsInfoSector(f: BootFields): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.write('RRaA', 0, 'latin1');
  b.write('rrAa', 484, 'latin1');
  b.writeUInt32LE(f.freeClusters, 488);
  b.writeUInt32LE(f.nextFree ?? 0xffffffff, 492);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** The whole reserved area (written in full so no older boot sector or FSInfo survives in it). */
export function reservedArea(f: BootFields): Buffer {
  const area = Buffer.alloc(RESERVED_SECTORS * SECTOR);
  const boot = bootSector(f);
  const info = fsInfoSector(f);
  boot.copy(area, 0);
  info.copy(area, FSINFO_SECTOR * SECTOR);
  boot.copy(area, BACKUP_BOOT_SECTOR * SECTOR);
  info.copy(area, (BACKUP_BOOT_SECTOR + FSINFO_SECTOR) * SECTOR);
  return area;
}
