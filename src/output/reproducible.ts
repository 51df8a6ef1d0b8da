// Makes a disk that qemu-img converted byte-reproducible: its random ids and current times are rewritten from --seed and SOURCE_DATE_EPOCH.
import { closeSync, openSync } from 'node:fs';
import { basename } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { fileOf } from './patch/file.js';
import { patchVdi } from './patch/vdi.js';
import { patchVhd } from './patch/vhd.js';
import { patchVhdx } from './patch/vhdx.js';
import { patchVmdk } from './patch/vmdk.js';

/** Output format ids (as the CLI spells them) whose files are disk images. */
export type DiskFormatId = 'raw' | 'qcow2' | 'vmdk' | 'vhdx' | 'vhd' | 'vdi';

export interface ReproducibleOptions {
  /** The name the file will finally have: a VMDK names its own extent file. Default: the file's current base name. */
  finalName?: string;
}

/**
 * What varies between two `qemu-img convert` runs of the same raw disk, and is rewritten here:
 * - vmdk: the descriptor's CID (random 32 bits) and the extent file name (the temporary output name);
 * - vhd: the footer's timestamp and unique id (both footer copies), and the footer checksum;
 * - vhdx: both headers' sequence numbers, file-write and data-write GUIDs and CRC-32C; the page-83 disk id in the
 *   metadata region; the log, which qemu-img leaves full of entries carrying a random log GUID (zeroed: the headers
 *   say the log is empty);
 * - vdi: the image UUID and the last-modification UUID;
 * - raw and qcow2 hold no ids or times (qemu-img's qcow2 and Qcow2Target's are already reproducible): nothing to do.
 * Values are drawn from random in a fixed order, so the same seed gives the same file.
 */
export function makeReproducible(
  format: DiskFormatId,
  file: string,
  random: Random,
  epochSeconds: number,
  opts: ReproducibleOptions = {},
): void {
  if (!Number.isFinite(epochSeconds) || epochSeconds < 0) {
    throw new Img2vmError(
      'usage',
      `the timestamp ${epochSeconds} is not a time img2vm can write`,
      'set SOURCE_DATE_EPOCH to whole seconds since 1970, or unset it',
    );
  }
  if (format === 'raw' || format === 'qcow2') return;
  const fd = openSync(file, 'r+');
  try {
    const f = fileOf(fd, format);
    switch (format) {
      case 'vmdk':
        patchVmdk(f, random, opts.finalName ?? basename(file));
        break;
      case 'vhd':
        patchVhd(f, random, epochSeconds);
        break;
      case 'vhdx':
        patchVhdx(f, random);
        break;
      case 'vdi':
        patchVdi(f, random);
        break;
      default: {
        const never: never = format;
        throw new Error(`makeReproducible: unknown format ${String(never)}`);
      }
    }
  } finally {
    closeSync(fd);
  }
}
