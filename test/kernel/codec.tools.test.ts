// The kernel path's decompressor (.deb data.tar, Packages, kernels): exact output, CodecError on damage, no process left.
// zstd is Node's own where it has one, else the tool, as for layers; a reader that stops at the size cap stops the tool.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { CodecError, decode } from '../../src/kernel/codec.js';

function tool(name: string, args: string[], input: Buffer): Buffer {
  const r = spawnSync(name, args, { input, maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0)
    throw new Error(
      `${name} could not run (${r.error?.message ?? r.stderr.toString()}); install it with scripts/install-deps.sh`,
    );
  return r.stdout;
}

/** Children of this process running one of the decompressors. */
function decompressorChildren(): string[] {
  const out: string[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    const m = /^\d+ \((.*)\) \S (\d+) /.exec(stat);
    if (m && ['zstd', 'xz', 'bzip2'].includes(m[1]!) && Number(m[2]) === process.pid) out.push(`${m[1]} ${d}`);
  }
  return out;
}

async function drain(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

const data = Buffer.concat([randomBytes(1 << 20), Buffer.alloc(4 << 20, 'k')]);
const COMPRESSORS: [string, (b: Buffer) => Buffer][] = [
  ['zstd', (b) => tool('zstd', ['-q', '-c'], b)],
  ['xz', (b) => tool('xz', ['-c', '-1'], b)],
  ['bzip2', (b) => tool('bzip2', ['-c', '-1'], b)],
];

afterEach(() => expect(decompressorChildren(), 'decompressors left running').toEqual([]));

describe('kernel-path decode', () => {
  for (const [name, compress] of COMPRESSORS) {
    const blob = compress(data);

    it(`${name}: decompresses exactly`, async () => {
      const { compression, chunks } = decode(blob.subarray(0, 512), Readable.from([blob]), {
        maxBytes: 1 << 30,
        what: 'test.tar',
      });
      expect(compression).toBe(name);
      expect((await drain(chunks)).equals(data)).toBe(true);
    });

    it(`${name}: more than maxBytes stops the decompressor (no process left, no hang)`, async () => {
      const { chunks } = decode(blob.subarray(0, 512), Readable.from([blob]), { maxBytes: 100_000, what: 'test.tar' });
      const e = await drain(chunks).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(CodecError);
      expect((e as Error).message).toBe('test.tar decompresses to more than 100000 bytes');
    });

    it(`${name}: a truncated or damaged stream is a CodecError`, async () => {
      const flipped = Buffer.from(blob);
      for (let i = 200; i < 300; i++) flipped[i]! ^= 0x33;
      for (const bad of [blob.subarray(0, blob.length - 10), flipped]) {
        const { chunks } = decode(bad.subarray(0, 512), Readable.from([bad]), { maxBytes: 1 << 30, what: 'test.tar' });
        const e = await drain(chunks).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(CodecError);
        expect((e as Error).message).toMatch(/^test\.tar: /);
      }
    });
  }
});
