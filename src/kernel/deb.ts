// Feeds the data.tar of a .deb (ar archive, xz/gzip/zstd-compressed tar) to a kernel collector.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { ByteSource, TarReader } from '../rootfs/tar.js';
import { debMembers } from './ar.js';
import { decode } from './codec.js';
import type { KernelCollector } from './collect.js';

/** A kernel package unpacks to well under a GiB; far more is a decompression bomb. */
const MAX_DATA = 8 * 2 ** 30;

export async function collectDeb(debPath: string, collector: KernelCollector, signal?: AbortSignal): Promise<void> {
  const fh = await open(debPath, 'r');
  let dataOffset: number;
  let dataSize: number;
  let head: Buffer;
  try {
    const size = (await fh.stat()).size;
    const readAt = async (offset: number, len: number): Promise<Buffer> => {
      const b = Buffer.alloc(len);
      const { bytesRead } = await fh.read(b, 0, len, offset);
      return b.subarray(0, bytesRead);
    };
    const { data } = await debMembers(readAt, size);
    dataOffset = data.offset;
    dataSize = data.size;
    head = await readAt(data.offset, Math.min(512, data.size));
  } finally {
    await fh.close();
  }
  if (dataSize === 0) return;
  const stream = createReadStream(debPath, { start: dataOffset, end: dataOffset + dataSize - 1 });
  const { chunks } = decode(head, stream, { signal, maxBytes: MAX_DATA, what: `${debPath}: data.tar` });
  try {
    await collector.addTar(new TarReader(new ByteSource(chunks)), { whiteouts: false });
  } finally {
    // Stops the decompressor (and closes the file) when the collector gave up early.
    await chunks.return(undefined);
  }
}
