// The 32-byte FAT directory entries: short entries with their timestamps, and the VFAT long-name entries before them.
import { shortNameChecksum, type ShortName } from './names.js';

export const ENTRY = 32;
export const ATTR_VOLUME_ID = 0x08;
export const ATTR_DIRECTORY = 0x10;
export const ATTR_ARCHIVE = 0x20;
const ATTR_LONG_NAME = 0x0f;
/** UTF-16 code units per long-name entry. */
const LONG_CHARS = 13;
/** Where the 13 code units sit in a long-name entry: 5 at byte 1, 6 at byte 14, 2 at byte 28. */
const LONG_SLOTS = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30] as const;

export interface FatTime {
  date: number;
  time: number;
  /** Creation time's 10 ms units (0-199): carries the odd second the 2-second time field cannot. */
  centis: number;
}

// FAT dates count years from 1980 in 7 bits.
const MIN_EPOCH = Date.UTC(1980, 0, 1) / 1000;
const MAX_EPOCH = Date.UTC(2107, 11, 31, 23, 59, 59) / 1000;

/**
 * FAT has no time zone: its fields are local time. img2vm writes the epoch's UTC calendar time, as mkfs.fat and
 * mtools do under TZ=UTC, clamped to what FAT can hold (1980-01-01 .. 2107-12-31).
 */
export function fatTime(epochSeconds: number): FatTime {
  const s = Math.min(Math.max(Math.floor(epochSeconds), MIN_EPOCH), MAX_EPOCH);
  const d = new Date(s * 1000);
  const date = ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate();
  const time = (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1);
  return { date, time, centis: (d.getUTCSeconds() & 1) * 100 };
}

export interface ShortEntry {
  name: Uint8Array;
  attr: number;
  caseFlags: number;
  cluster: number;
  size: number;
  time: FatTime;
}

export function encodeShortEntry(e: ShortEntry): Buffer {
  const b = Buffer.alloc(ENTRY);
  b.set(e.name.subarray(0, 11), 0);
  b[11] = e.attr;
  b[12] = e.caseFlags;
  b[13] = e.time.centis;
  b.writeUInt16LE(e.time.time, 14);
  b.writeUInt16LE(e.time.date, 16);
  b.writeUInt16LE(e.time.date, 18);
  b.writeUInt16LE(e.cluster >>> 16, 20);
  b.writeUInt16LE(e.time.time, 22);
  b.writeUInt16LE(e.time.date, 24);
  b.writeUInt16LE(e.cluster & 0xffff, 26);
  b.writeUInt32LE(e.size, 28);
  return b;
}

/** Long-name entries needed for a name of `length` code units. */
export function longEntryCount(length: number): number {
  return Math.ceil(length / LONG_CHARS);
}

/**
 * The long-name entries of `name`, in directory order: the last part first, flagged 0x40, down to part 1, which sits
 * just before the short entry. A name that does not fill its last entry ends with a 0x0000 unit, then 0xFFFF padding.
 */
export function encodeLongEntries(name: string, short: Uint8Array): Buffer[] {
  const count = longEntryCount(name.length);
  const sum = shortNameChecksum(short);
  const entries: Buffer[] = [];
  for (let part = count; part >= 1; part--) {
    const b = Buffer.alloc(ENTRY);
    b[0] = part | (part === count ? 0x40 : 0);
    b[11] = ATTR_LONG_NAME;
    b[13] = sum;
    LONG_SLOTS.forEach((at, k) => {
      const i = (part - 1) * LONG_CHARS + k;
      const unit = i < name.length ? name.charCodeAt(i) : i === name.length ? 0 : 0xffff;
      b.writeUInt16LE(unit, at);
    });
    entries.push(b);
  }
  return entries;
}

/** Every entry a named child takes: its long-name entries (if it needs them), then its short entry. */
export function encodeNamed(name: string, short: ShortName, e: Omit<ShortEntry, 'name' | 'caseFlags'>): Buffer[] {
  const tail = encodeShortEntry({ ...e, name: short.bytes, caseFlags: short.caseFlags });
  return short.long ? [...encodeLongEntries(name, short.bytes), tail] : [tail];
}

/** The "." and ".." names of every directory but the root. */
export const DOT = Buffer.from('.          ', 'latin1');
export const DOTDOT = Buffer.from('..         ', 'latin1');
