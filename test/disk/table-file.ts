// Test helpers for partition tables: writing a planned table into an image file, and reading GPT GUIDs back.
import { fstat, write } from 'node:fs';
import { promisify } from 'node:util';
import type { DiskLayout } from '../../src/disk/layout.js';
import { BOOT_CODE_SIZE } from '../../src/disk/mbr.js';
import { partitionTableBytes } from '../../src/disk/table.js';

/** What a fs/promises FileHandle offers; anything with positional writes will do. */
export interface PositionalFile {
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  stat(): Promise<{ size: number; isFile(): boolean }>;
}

/**
 * Writes the table into an image file of exactly layout.diskSize bytes (a regular file; block devices are not
 * size-checked). Without bootCode the boot-code area of sector 0 is left as the file has it, as fdisk does, so a
 * boot loader written earlier survives and the order of the two steps does not matter.
 */
export async function writePartitionTable(
  file: number | PositionalFile,
  layout: DiskLayout,
  bootCode?: Buffer,
): Promise<void> {
  const f = typeof file === 'number' ? fdFile(file) : file;
  const st = await f.stat();
  if (st.isFile() && st.size !== layout.diskSize) {
    // The backup GPT belongs in the last sectors; writing it anywhere else would make a disk every tool rejects.
    throw new Error(`the image is ${st.size} bytes but the layout is for ${layout.diskSize}; size the file first`);
  }
  for (const chunk of partitionTableBytes(layout, bootCode)) {
    const skip = chunk.offset === 0 && bootCode === undefined ? BOOT_CODE_SIZE : 0;
    await writeAll(f, chunk.bytes.subarray(skip), chunk.offset + skip);
  }
}

async function writeAll(f: PositionalFile, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await f.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten <= 0) throw new Error(`short write at byte ${position + done} of the disk image`);
    done += bytesWritten;
  }
}

const fstatAsync = promisify(fstat);

function fdFile(fd: number): PositionalFile {
  return {
    write: (buffer, offset, length, position) =>
      new Promise((resolve, reject) => {
        write(fd, buffer, offset, length, position, (err, bytesWritten) =>
          err ? reject(err) : resolve({ bytesWritten }),
        );
      }),
    stat: () => fstatAsync(fd),
  };
}

export function decodeGuid(bytes: Buffer): string {
  if (bytes.length !== 16) throw new Error(`a GUID is 16 bytes, got ${bytes.length}`);
  const b = Buffer.from(bytes);
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const h = b.toString('hex').toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
