// The zstd frame walker accepts exactly what the zstd tool accepts, at every cut point, however the bytes are split.
// It is what makes a truncated stream an error under Node's own zstd.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ZstdFrameError, ZstdFrames } from '../../src/rootfs/zstd-frames.js';

function zstdCli(data: Buffer, args: string[]): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', ...args], { input: data, maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0)
    throw new Error(
      `zstd could not run (${r.error?.message ?? r.stderr.toString()}); install it with scripts/install-deps.sh`,
    );
  return r.stdout;
}

/** Whether the zstd tool decompresses these bytes without an error. */
function toolAccepts(b: Buffer): boolean {
  const r = spawnSync('zstd', ['-q', '-d', '-c'], { input: b, maxBuffer: 1 << 30 });
  return r.status === 0;
}

function walk(b: Buffer, split = b.length): ZstdFrameError | undefined {
  const f = new ZstdFrames();
  try {
    for (let i = 0; i < b.length; i += split) f.push(b.subarray(i, i + split));
    f.end();
    return undefined;
  } catch (e) {
    if (e instanceof ZstdFrameError) return e;
    throw e;
  }
}

function skippable(data: Buffer, n = 0): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(0x184d2a50 + n, 0);
  h.writeUInt32LE(data.length, 4);
  return Buffer.concat([h, data]);
}

// Raw blocks (random bytes), RLE blocks (zeros), compressed blocks (text); with and without checksum and content size.
const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(4000));
const frames = [
  zstdCli(randomBytes(300_000), ['-3']),
  zstdCli(Buffer.alloc(400_000), ['-1', '--no-check']),
  zstdCli(text, ['-19', '--no-content-size']),
  zstdCli(Buffer.from('tiny'), ['-3']),
  zstdCli(Buffer.alloc(0), ['-3']),
];

describe('zstd frame walker', () => {
  it('accepts every stream the zstd tool writes, fed whole or a byte at a time', () => {
    for (const f of frames) {
      expect(walk(f)).toBeUndefined();
      expect(walk(f, 1)).toBeUndefined();
      expect(walk(f, 4093)).toBeUndefined();
    }
    const all = Buffer.concat([...frames, skippable(Buffer.from('metadata'), 7), frames[3]!]);
    expect(toolAccepts(all)).toBe(true);
    expect(walk(all)).toBeUndefined();
    expect(walk(all, 3)).toBeUndefined();
  });

  it('rejects a stream cut anywhere but between frames, as the zstd tool does', () => {
    // Small frames first (every cut of them is tried), then one of raw blocks (300 kB).
    const parts = [frames[3]!, frames[2]!, skippable(Buffer.from('x'.repeat(20))), frames[1]!, frames[0]!];
    const stream = Buffer.concat(parts);
    const boundaries = new Set<number>();
    let at = 0;
    for (const part of parts) boundaries.add((at += part.length));
    // Every cut in the small frames and around every boundary; a sample elsewhere.
    const cuts = new Set<number>();
    for (let c = 1; c < Math.min(200, stream.length); c++) cuts.add(c);
    for (const b of boundaries)
      for (let d = -12; d <= 12; d++) if (b + d > 0 && b + d <= stream.length) cuts.add(b + d);
    for (let c = 200; c < stream.length; c += 97) cuts.add(c);
    let checked = 0;
    for (const c of [...cuts].sort((a, b) => a - b)) {
      const cut = stream.subarray(0, c);
      const whole = boundaries.has(c);
      expect(walk(cut) === undefined, `cut at ${c} of ${stream.length}`).toBe(whole);
      if (checked++ % 25 === 0 || whole) expect(toolAccepts(cut), `zstd tool on the cut at ${c}`).toBe(whole);
    }
    expect(walk(stream.subarray(0, 0))?.message).toMatch(/no frame/);
  });

  it('rejects bytes after the last frame that are no frame, as the zstd tool does', () => {
    const f = frames[3]!;
    for (const tail of [Buffer.alloc(512), Buffer.from('garbage!'), Buffer.from([0x28, 0xb5])]) {
      const b = Buffer.concat([f, tail]);
      expect(toolAccepts(b)).toBe(false);
      expect(walk(b), tail.toString('hex')).toBeInstanceOf(ZstdFrameError);
    }
    expect(walk(Buffer.concat([f, Buffer.alloc(4)]))?.message).toMatch(new RegExp(`no zstd frame at byte ${f.length}`));
  });

  it('rejects a reserved block type and the reserved header bit, as the zstd tool does', () => {
    const f = Buffer.from(frames[3]!);
    f[4] = f[4]! | 0x08;
    expect(toolAccepts(f)).toBe(false);
    expect(walk(f)?.message).toMatch(/reserved bit/);
    // Magic, a single-segment descriptor with a 1-byte content size (4), then a last block of the reserved type 3.
    const reserved = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x04, 1 | (3 << 1) | (4 << 3), 0, 0, 1, 2, 3, 4]);
    expect(toolAccepts(reserved)).toBe(false);
    expect(walk(reserved)?.message).toMatch(/reserved type/);
  });
});
