// VHD (qemu's vpc): the footer's creation time and unique id, in both footer copies, with the footer checksum redone.
import type { Random } from '../../core/random.js';
import { guidLE } from './ids.js';
import { readAt, unexpected, writeAt, type PatchFile } from './file.js';

const FOOTER = 512;
const TIMESTAMP = 24;
const DISK_TYPE = 60;
const CHECKSUM = 64;
const UNIQUE_ID = 68;
/** VHD times count seconds from 2000-01-01T00:00:00Z. */
const VHD_EPOCH = 946_684_800;
const DYNAMIC = 3;
const DIFFERENCING = 4;

export function vhdChecksum(footer: Buffer): number {
  let sum = 0;
  for (let i = 0; i < FOOTER; i++) if (i < CHECKSUM || i >= CHECKSUM + 4) sum += footer[i]!;
  return ~sum >>> 0;
}

/** The VHD timestamp for a Unix time; the 32-bit field cannot hold times before 2000 or after 2136, so they are clamped. */
export function vhdTimestamp(epochSeconds: number): number {
  return Math.min(0xffff_ffff, Math.max(0, Math.floor(epochSeconds) - VHD_EPOCH));
}

export function patchVhd(f: PatchFile, random: Random, epochSeconds: number): void {
  if (f.size < FOOTER || f.size % 512 !== 0) unexpected(f, `its size ${f.size} is not whole sectors`);
  const at = f.size - FOOTER;
  const footer = readAt(f, at, FOOTER);
  if (footer.toString('latin1', 0, 8) !== 'conectix') unexpected(f, 'no "conectix" footer at the end');
  if (footer.readUInt32BE(CHECKSUM) !== vhdChecksum(footer)) unexpected(f, 'the footer checksum is wrong');
  const type = footer.readUInt32BE(DISK_TYPE);
  if (type === DIFFERENCING) unexpected(f, 'it is a differencing disk');
  // A dynamic disk carries a copy of the footer in its first sector; it must stay identical to the one at the end.
  if (type === DYNAMIC && !readAt(f, 0, FOOTER).equals(footer))
    unexpected(f, 'the footer copy at the start differs from the footer');
  footer.writeUInt32BE(vhdTimestamp(epochSeconds), TIMESTAMP);
  guidLE(random).copy(footer, UNIQUE_ID);
  footer.writeUInt32BE(vhdChecksum(footer), CHECKSUM);
  if (type === DYNAMIC) writeAt(f, footer, 0);
  writeAt(f, footer, at);
}
