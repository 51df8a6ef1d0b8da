// A planned partition table (MBR or GPT) as the byte ranges the disk stage writes: no loop device, no tools.
import { gptSectors } from './gpt.js';
import type { DiskLayout } from './layout.js';
import { mbrPartitionSector, protectiveMbr } from './mbr.js';

export interface TableChunk {
  /** Byte offset in the disk image. */
  offset: number;
  bytes: Buffer;
}

/** Every byte range the table occupies, in disk order. Sector 0 always comes whole, boot-code area included. */
export function partitionTableBytes(layout: DiskLayout, bootCode?: Buffer): TableChunk[] {
  if (layout.table === 'mbr') return [{ offset: 0, bytes: mbrPartitionSector(layout, bootCode) }];
  const ss = layout.sectorSize;
  const g = gptSectors(layout);
  return [
    { offset: 0, bytes: Buffer.concat([protectiveMbr(layout, bootCode), g.primaryHeader, g.entries]) },
    { offset: g.backupEntriesLba * ss, bytes: Buffer.concat([g.entries, g.backupHeader]) },
  ];
}
