// Decompresses a byte stream by its magic (gzip, and zstd where Node has it, in-process; the others by host tools), size-capped.
import { pipeline, type Readable, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { detectCompression, nodeZstd, type Compression } from '../rootfs/decompress.js';
import { zstdFrameCheck } from '../rootfs/zstd-frames.js';
import { decompressArgv, FilterError, filterThrough, type FilterDecompressor } from '../tools/filter.js';

export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

const TOOL: Partial<Record<Compression, FilterDecompressor>> = { xz: 'xz', zstd: 'zstd', bzip2: 'bzip2' };

export interface DecodeOptions {
  signal?: AbortSignal;
  /** More decompressed bytes than this is a decompression bomb. */
  maxBytes: number;
  what: string;
}

async function* capped(src: AsyncIterable<Buffer>, o: DecodeOptions): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const c of src) {
    n += c.length;
    if (n > o.maxBytes) throw new CodecError(`${o.what} decompresses to more than ${o.maxBytes} bytes`);
    yield c;
  }
}

async function* viaTool(tool: FilterDecompressor, input: Readable, o: DecodeOptions): AsyncGenerator<Buffer> {
  const f = filterThrough(tool, decompressArgv(tool), input as AsyncIterable<Buffer>);
  const onAbort = (): void => f.stop(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let finished = false;
  try {
    // Delegated, so a reader that stops early (the size cap) stops the program too, and waits for it.
    yield* f.chunks;
    finished = true;
  } catch (e) {
    if (o.signal?.aborted) throw o.signal.reason;
    if (e instanceof FilterError) throw new CodecError(`${o.what}: ${e.message}`);
    throw e;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    if (!finished) input.destroy();
  }
}

async function* viaZlib(z: Transform, input: Readable, o: DecodeOptions, check?: Transform): AsyncGenerator<Buffer> {
  if (check) pipeline(input, check, z, () => {});
  else pipeline(input, z, () => {});
  try {
    for await (const c of z as AsyncIterable<Buffer>) yield c;
  } catch (e) {
    if (o.signal?.aborted) throw o.signal.reason;
    throw new CodecError(`${o.what}: ${(e as Error).message}`);
  } finally {
    z.destroy();
    check?.destroy();
    input.destroy();
  }
}

/** Decompressed chunks of `input`; `head` (the first bytes, already read) decides the codec. */
export function decode(
  head: Buffer,
  input: Readable,
  o: DecodeOptions,
): { compression: Compression; chunks: AsyncGenerator<Buffer> } {
  const compression = detectCompression(head);
  if (compression === 'none') return { compression, chunks: capped(input as AsyncIterable<Buffer>, o) };
  if (compression === 'gzip')
    return { compression, chunks: capped(viaZlib(zlib.createGunzip({ chunkSize: 1 << 16 }), input, o), o) };
  // zstd as layers have it: Node's own where this Node has one, else the host tool.
  const zstd = compression === 'zstd' ? nodeZstd() : undefined;
  if (zstd)
    return { compression, chunks: capped(viaZlib(zstd({ chunkSize: 1 << 16 }), input, o, zstdFrameCheck()), o) };
  return { compression, chunks: capped(viaTool(TOOL[compression]!, input, o), o) };
}
