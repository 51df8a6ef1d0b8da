// VDI (VirtualBox): the image and last-modification UUIDs qemu-img draws at random (VDI has no checksums and no times).
import type { Random } from '../../core/random.js';
import { guidLE } from './ids.js';
import { readAt, unexpected, writeAt, type PatchFile } from './file.js';

const SIGNATURE = 0xbeda107f;
const VERSION_1_1 = 0x0001_0001;
/** The v1.1 header as qemu writes it (384 bytes), or with the LCHS geometry VirtualBox appends (400). */
const HEADER_1_1_SIZES = [0x180, 0x190];
const UUID_IMAGE = 0x188;
const UUID_LAST_MODIFY = 0x198;
const UUID_LINK = 0x1a8;
const UUID_PARENT = 0x1b8;

export function patchVdi(f: PatchFile, random: Random): void {
  const h = readAt(f, 0, 0x200);
  if (h.readUInt32LE(0x40) !== SIGNATURE) unexpected(f, 'no VDI signature');
  if (h.readUInt32LE(0x44) !== VERSION_1_1 || !HEADER_1_1_SIZES.includes(h.readUInt32LE(0x48)))
    unexpected(f, 'it is not a version 1.1 VDI header');
  // Link and parent UUIDs are only set on snapshots and differencing images, which img2vm never makes.
  const zero = Buffer.alloc(16);
  if (!h.subarray(UUID_LINK, UUID_LINK + 16).equals(zero) || !h.subarray(UUID_PARENT, UUID_PARENT + 16).equals(zero)) {
    unexpected(f, 'it has a parent or link UUID');
  }
  writeAt(f, guidLE(random), UUID_IMAGE);
  writeAt(f, guidLE(random), UUID_LAST_MODIFY);
}
