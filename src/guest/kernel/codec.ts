// Decompresses a byte stream by its magic: gzip in-process, xz/zstd/bzip2 through their host tools, with a cap on the output size.
import { pipeline, type Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { detectCompression, type Compression } from '../../rootfs/decompress.js';
import type { ToolName } from '../../tools/index.js';
import { spawnTool, stopProcess } from '../../tools/process.js';

export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

const TOOL: Partial<Record<Compression, [ToolName, string[]]>> = {
  xz: ['xz', ['--decompress', '--stdout']],
  zstd: ['zstd', ['--decompress', '--stdout', '--quiet']],
  bzip2: ['bzip2', ['--decompress', '--stdout']],
};

/** The argv that decompresses stdin to stdout, for the codecs that need a host tool. */
export function decompressArgv(c: Compression): [ToolName, string[]] | undefined {
  return TOOL[c];
}

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

async function* viaTool(name: ToolName, argv: string[], input: Readable, o: DecodeOptions): AsyncGenerator<Buffer> {
  const child = spawnTool(name, argv, { stdio: 'pipe' });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  // A tool that exits early closes its stdin: that EPIPE is reported through the exit status instead.
  pipeline(input, child.stdin!, () => {});
  const onAbort = (): void => void stopProcess(child, 1000);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let finished = false;
  try {
    for await (const c of child.stdout! as AsyncIterable<Buffer>) yield c;
    const r = await child;
    if (o.signal?.aborted) throw o.signal.reason;
    if (r.exitCode !== 0) throw new CodecError(`${o.what}: ${name} failed (exit ${r.exitCode ?? r.signal}): ${stderr.trim().split('\n').slice(-2).join(' | ') || 'no output'}`);
    finished = true;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    if (!finished) {
      input.destroy();
      await stopProcess(child, 1000);
    }
  }
}

async function* gunzip(input: Readable, o: DecodeOptions): AsyncGenerator<Buffer> {
  const z = zlib.createGunzip({ chunkSize: 1 << 16 });
  pipeline(input, z, () => {});
  try {
    for await (const c of z as AsyncIterable<Buffer>) yield c;
  } catch (e) {
    if (o.signal?.aborted) throw o.signal.reason;
    throw new CodecError(`${o.what}: ${(e as Error).message}`);
  } finally {
    z.destroy();
    input.destroy();
  }
}

/** Decompressed chunks of `input`; `head` (the first bytes, already read) decides the codec. */
export function decode(head: Buffer, input: Readable, o: DecodeOptions): { compression: Compression; chunks: AsyncGenerator<Buffer> } {
  const compression = detectCompression(head);
  if (compression === 'none') return { compression, chunks: capped(input as AsyncIterable<Buffer>, o) };
  if (compression === 'gzip') return { compression, chunks: capped(gunzip(input, o), o) };
  const [tool, argv] = TOOL[compression]!;
  return { compression, chunks: capped(viaTool(tool, argv, input, o), o) };
}
