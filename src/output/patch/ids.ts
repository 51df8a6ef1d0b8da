// Identifiers drawn from img2vm's Random, encoded the way disk formats store them.
import type { Random } from '../../core/random.js';

/** A version-4 UUID in the Microsoft GUID layout (first three fields little-endian), as VHD, VHDX and VDI store them. */
export function guidLE(random: Random): Buffer {
  return guidLayout(random.uuid());
}

/** A UUID string in the Microsoft GUID layout. */
export function guidLayout(uuid: string): Buffer {
  const be = Buffer.from(uuid.replace(/-/g, ''), 'hex');
  const b = Buffer.from(be);
  b.writeUInt32LE(be.readUInt32BE(0), 0);
  b.writeUInt16LE(be.readUInt16BE(4), 4);
  b.writeUInt16LE(be.readUInt16BE(6), 6);
  return b;
}

/** A 32-bit value from the random stream. */
export function u32(random: Random): number {
  return random.bytes(4).readUInt32BE(0);
}
