// Builds the GUID partition table: primary header and entries after the protective MBR, backup copies at the disk's end.
import { crc32 as zlibCrc32 } from 'node:zlib';
import type { DiskLayout } from './layout.js';

export const GPT_ENTRY_COUNT = 128;
export const GPT_ENTRY_SIZE = 128;
/** 128 entries × 128 bytes = 32 sectors; fewer entries would save nothing (partitions start at 1 MiB) and some tools assume 128. */
export const GPT_ENTRY_SECTORS = (GPT_ENTRY_COUNT * GPT_ENTRY_SIZE) / 512;
const HEADER_SIZE = 92;
const REVISION_1_0 = 0x0001_0000;
const NAME_UNITS = 36;
/** UEFI "Legacy BIOS Bootable". Only set for partitions planned bootable, which the planner never does on GPT:
 * GRUB's boot.img and SeaBIOS ignore it, and gptmbr-style loaders that need it are not what we install. */
export const ATTR_LEGACY_BIOS_BOOTABLE = 1n << 2n;

export interface GptSectors {
  /** LBA 1. */
  primaryHeader: Buffer;
  /** LBA 2 onwards, and again at backupEntriesLba. */
  entries: Buffer;
  backupEntriesLba: number;
  /** The last LBA of the disk. */
  backupHeader: Buffer;
  backupHeaderLba: number;
}

export function gptSectors(layout: DiskLayout): GptSectors {
  if (layout.table !== 'gpt') throw new Error(`gptSectors: the layout uses ${layout.table}`);
  const ss = layout.sectorSize;
  if (layout.diskSize % ss !== 0)
    throw new Error(`disk size ${layout.diskSize} is not a whole number of ${ss}-byte sectors`);
  const lastLba = layout.diskSize / ss - 1;
  const firstUsable = 2 + GPT_ENTRY_SECTORS;
  const backupEntriesLba = lastLba - GPT_ENTRY_SECTORS;
  const lastUsable = backupEntriesLba - 1;
  if (lastUsable < firstUsable) throw new Error(`a ${layout.diskSize}-byte disk is too small for a GPT`);

  const entries = gptEntries(layout, firstUsable, lastUsable);
  const entriesCrc = crc32(entries);
  const header = (myLba: number, alternateLba: number, entriesLba: number): Buffer => {
    const h = Buffer.alloc(ss);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(REVISION_1_0, 8);
    h.writeUInt32LE(HEADER_SIZE, 12);
    h.writeBigUInt64LE(BigInt(myLba), 24);
    h.writeBigUInt64LE(BigInt(alternateLba), 32);
    h.writeBigUInt64LE(BigInt(firstUsable), 40);
    h.writeBigUInt64LE(BigInt(lastUsable), 48);
    encodeGuid(layout.diskGuid).copy(h, 56);
    h.writeBigUInt64LE(BigInt(entriesLba), 72);
    h.writeUInt32LE(GPT_ENTRY_COUNT, 80);
    h.writeUInt32LE(GPT_ENTRY_SIZE, 84);
    h.writeUInt32LE(entriesCrc, 88);
    // The header CRC covers HEADER_SIZE bytes with its own field still zero.
    h.writeUInt32LE(crc32(h.subarray(0, HEADER_SIZE)), 16);
    return h;
  };
  return {
    primaryHeader: header(1, lastLba, 2),
    entries,
    backupEntriesLba,
    backupHeader: header(lastLba, 1, backupEntriesLba),
    backupHeaderLba: lastLba,
  };
}

function gptEntries(layout: DiskLayout, firstUsable: number, lastUsable: number): Buffer {
  const ss = layout.sectorSize;
  const out = Buffer.alloc(GPT_ENTRY_COUNT * GPT_ENTRY_SIZE);
  for (const p of layout.partitions) {
    if (p.index < 1 || p.index > GPT_ENTRY_COUNT)
      throw new Error(`partition index ${p.index} is outside 1..${GPT_ENTRY_COUNT}`);
    const first = p.start / ss;
    const last = (p.start + p.size) / ss - 1;
    if (
      !Number.isInteger(first) ||
      !Number.isInteger(last) ||
      first < firstUsable ||
      last > lastUsable ||
      last < first
    ) {
      throw new Error(
        `partition ${p.index} (${p.role}) at sectors ${first}..${last} is outside the usable ${firstUsable}..${lastUsable}`,
      );
    }
    const o = (p.index - 1) * GPT_ENTRY_SIZE;
    encodeGuid(p.gptType).copy(out, o);
    encodeGuid(p.guid).copy(out, o + 16);
    out.writeBigUInt64LE(BigInt(first), o + 32);
    out.writeBigUInt64LE(BigInt(last), o + 40);
    out.writeBigUInt64LE(p.bootable ? ATTR_LEGACY_BIOS_BOOTABLE : 0n, o + 48);
    encodeName(p.name).copy(out, o + 56);
  }
  return out;
}

function encodeName(name: string): Buffer {
  const b = Buffer.from(name, 'utf16le');
  if (b.length > NAME_UNITS * 2)
    throw new Error(`GPT partition name "${name}" is longer than ${NAME_UNITS} UTF-16 code units`);
  return b;
}

const GUID = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i;

/** GUIDs are stored mixed-endian: the first three fields little-endian, the last eight bytes as written. */
export function encodeGuid(guid: string): Buffer {
  const m = GUID.exec(guid);
  if (!m) throw new Error(`not a GUID: "${guid}"`);
  const b = Buffer.from(m.slice(1).join(''), 'hex');
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

/** CRC-32 (IEEE) as GPT's headers and entry arrays carry it. */
export function crc32(data: Uint8Array): number {
  return zlibCrc32(data);
}
