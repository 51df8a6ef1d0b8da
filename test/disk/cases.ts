// The fixed layouts behind the golden files and the sfdisk round trips, shared by both tests.
import { open } from 'node:fs/promises';
import { createRandom } from '../../src/core/random.js';
import { GiB, MiB } from '../../src/core/units.js';
import { planLayout, type DiskLayout, type LayoutInput } from '../../src/disk/layout.js';

export interface LayoutCase {
  name: string;
  input: Omit<LayoutInput, 'random' | 'rootSize' | 'diskSize'>;
}

export const DISK_SIZE = 3 * GiB;

export const CASES: LayoutCase[] = [
  { name: 'bios-mbr', input: { boot: 'bios', bootPartitionSize: 256 * MiB } },
  { name: 'bios-gpt', input: { boot: 'bios', table: 'gpt' } },
  { name: 'uefi-gpt', input: { boot: 'uefi' } },
  { name: 'hybrid-gpt', input: { boot: 'hybrid', bootPartitionSize: 256 * MiB } },
  { name: 'hybrid-mbr', input: { boot: 'hybrid', table: 'mbr' } },
];

/** Seeded, so the bytes never change unless the code does. */
export function caseLayout(c: LayoutCase, diskSize = DISK_SIZE): DiskLayout {
  return planLayout({ ...c.input, rootSize: GiB, diskSize, random: createRandom('golden') });
}

/** Reads length bytes of a file at offset (partition-table sectors of a test image). */
export async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    await fh.read(b, 0, length, offset);
    return b;
  } finally {
    await fh.close();
  }
}
