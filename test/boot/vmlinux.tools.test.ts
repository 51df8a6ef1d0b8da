// bzImage → ELF vmlinux for Firecracker and cloud-hypervisor: the payload is found from the boot header, LZ4 (Debian's
// choice) and gzip are decoded in-process, the rest by host tools; the result must be an x86-64 ELF.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bzImagePayload, extractVmlinux, inspectElfKernel, lz4LegacyDecode } from '../../src/boot/vmlinux.js';

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'img2vm-vmlinux-'));
});
afterAll(() => rm(scratch, { recursive: true, force: true }));

const LEGACY = Buffer.from([0x02, 0x21, 0x4c, 0x18]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
/** A legacy LZ4 frame of the given raw blocks. */
const frame = (...blocks: Buffer[]) => Buffer.concat([LEGACY, ...blocks.flatMap((b) => [u32(b.length), b])]);

/** A minimal x86-64 ELF with one PT_NOTE segment holding a Xen note of the given type (18 = PVH entry). */
function elf(o: { noteType?: number; machine?: number; filler?: number } = {}): Buffer {
  const note = Buffer.alloc(20);
  note.writeUInt32LE(4, 0);
  note.writeUInt32LE(4, 4);
  note.writeUInt32LE(o.noteType ?? 18, 8);
  note.write('Xen\0', 12, 'latin1');
  note.writeUInt32LE(0x1000000, 16);
  const b = Buffer.alloc(120 + note.length + (o.filler ?? 4096), 0x90);
  b.fill(0, 0, 120);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2;
  b[5] = 1;
  b[6] = 1;
  b.writeUInt16LE(2, 16);
  b.writeUInt16LE(o.machine ?? 62, 18);
  b.writeBigUInt64LE(64n, 32);
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(1, 56);
  b.writeUInt32LE(4, 64);
  b.writeBigUInt64LE(120n, 72);
  b.writeBigUInt64LE(BigInt(note.length), 96);
  note.copy(b, 120);
  return b;
}

/** A bzImage shell: setup header with payload_offset/length, the payload, then the appended decompressed size. */
function bzImage(compressed: Buffer, size: number, o: { setupSects?: number; version?: number } = {}): Buffer {
  const sects = o.setupSects ?? 1;
  const pm = ((sects || 4) + 1) * 512;
  const img = Buffer.alloc(pm + 16 + compressed.length + 4 + 64);
  img[0x1f1] = sects;
  img.write('HdrS', 0x202, 'latin1');
  img.writeUInt16LE(o.version ?? 0x20f, 0x206);
  img.writeUInt32LE(16, 0x248);
  img.writeUInt32LE(compressed.length + 4, 0x24c);
  compressed.copy(img, pm + 16);
  img.writeUInt32LE(size, pm + 16 + compressed.length);
  return img;
}

const tool = (cmd: string, args: string[], input: Buffer) => execFileSync(cmd, args, { input, maxBuffer: 1 << 30 });

describe('LZ4 legacy decoding', () => {
  it('decodes literals, an overlapping match and a final literal run', () => {
    // "abc", then 9 bytes from 3 back (overlapping), then "xyz!!" alone as the last sequence
    const block = Buffer.concat([
      Buffer.from([0x35]),
      Buffer.from('abc'),
      Buffer.from([3, 0]),
      Buffer.from([0x50]),
      Buffer.from('xyz!!'),
    ]);
    expect(lz4LegacyDecode(frame(block), 17).toString()).toBe('abcabcabcabcxyz!!');
  });
  it('reads extended literal and match lengths', () => {
    const lits = Buffer.from('ABCDEFGHIJKLMNOPQRST'); // 20 = 15 + 5
    // match: offset 1, length 4 + 15 + 255 + 1 = 275 copies of "T"
    const block = Buffer.concat([
      Buffer.from([0xff, 5]),
      lits,
      Buffer.from([1, 0, 255, 1]),
      Buffer.from([0x10]),
      Buffer.from('!'),
    ]);
    const out = lz4LegacyDecode(frame(block), 20 + 275 + 1);
    expect(out.toString()).toBe(`${lits.toString()}${'T'.repeat(275)}!`);
  });
  it('refuses matches before the start, blocks past the end and a size other than stated', () => {
    const before = Buffer.concat([
      Buffer.from([0x10]),
      Buffer.from('a'),
      Buffer.from([2, 0]),
      Buffer.from([0x10]),
      Buffer.from('b'),
    ]);
    expect(() => lz4LegacyDecode(frame(before), 10)).toThrow(/before the start/);
    const ok = Buffer.concat([Buffer.from([0x30]), Buffer.from('abc')]);
    expect(() => lz4LegacyDecode(Buffer.concat([LEGACY, u32(50), ok]), 3)).toThrow(/past the end/);
    expect(() => lz4LegacyDecode(frame(ok), 4)).toThrow(/decoded to 3 bytes/);
    expect(() => lz4LegacyDecode(frame(ok), 2)).toThrow(/past their block or the stated size/);
    expect(() => lz4LegacyDecode(Buffer.from('nope'), 3)).toThrow(/legacy magic/);
  });
  it('matches the lz4 tool on 9 MiB of mixed data (two 8 MiB blocks)', () => {
    const parts: Buffer[] = [];
    for (let i = 0; parts.length * 4096 < 9 << 20; i++)
      parts.push(i % 3 ? Buffer.alloc(4096, i & 0xff) : randomBytes(4096));
    const data = Buffer.concat(parts);
    const packed = tool('lz4', ['-l', '-c', '-9'], data);
    expect(lz4LegacyDecode(packed, data.length).equals(data)).toBe(true);
  });
});

describe('bzImage → vmlinux', () => {
  const kernel = elf({ filler: 200_000 });

  it.each([
    ['gzip', (b: Buffer) => gzipSync(b)],
    ['lz4', (b: Buffer) => tool('lz4', ['-l', '-c'], b)],
    ['xz', (b: Buffer) => tool('xz', ['--check=crc32', '-c'], b)],
    ['zstd', (b: Buffer) => tool('zstd', ['-q', '-c'], b)],
    ['lzma', (b: Buffer) => tool('xz', ['--format=lzma', '-c'], b)],
    ['bzip2', (b: Buffer) => tool('bzip2', ['-c'], b)],
    ['lzo', (b: Buffer) => tool('lzop', ['-c'], b)],
  ] as const)('finds and decodes a %s payload from the boot header', async (name, pack) => {
    const v = await extractVmlinux(bzImage(pack(kernel), kernel.length), scratch);
    expect(v.compression).toBe(name);
    expect(v.pvh).toBe(true);
    expect(v.elf.equals(kernel)).toBe(true);
  });
  it('takes setup_sects 0 as 4, as the boot protocol says', () => {
    const p = bzImagePayload(bzImage(gzipSync(kernel), kernel.length, { setupSects: 0 }));
    expect(p.compression).toBe('gzip');
    expect(p.size).toBe(kernel.length);
  });
  it('reports a kernel without the PVH note', async () => {
    const plain = elf({ noteType: 1 });
    expect((await extractVmlinux(bzImage(gzipSync(plain), plain.length), scratch)).pvh).toBe(false);
  });
  it('refuses what is not an x86-64 bzImage whose payload is what its header says', async () => {
    await expect(extractVmlinux(Buffer.alloc(4096), scratch)).rejects.toThrow(/not a bzImage/);
    await expect(extractVmlinux(bzImage(gzipSync(kernel), kernel.length, { version: 0x206 }), scratch)).rejects.toThrow(
      /boot protocol 2\.06/,
    );
    await expect(extractVmlinux(bzImage(Buffer.from('plain text, not compressed'), 26), scratch)).rejects.toThrow(
      /unknown compression/,
    );
    await expect(extractVmlinux(bzImage(gzipSync(kernel), kernel.length + 1), scratch)).rejects.toThrow(/states/);
    const arm = elf({ machine: 183 });
    await expect(extractVmlinux(bzImage(gzipSync(arm), arm.length), scratch)).rejects.toThrow(/not x86-64/);
    const text = Buffer.from('#!/bin/sh\n'.repeat(20));
    await expect(extractVmlinux(bzImage(gzipSync(text), text.length), scratch)).rejects.toThrow(/not an ELF/);
    const cut = bzImage(gzipSync(kernel), kernel.length);
    await expect(extractVmlinux(cut.subarray(0, cut.length - 80), scratch)).rejects.toThrow(/outside the file/);
  });
  it('leaves nothing behind in the scratch directory after a tool decompression', async () => {
    await extractVmlinux(bzImage(tool('xz', ['--check=crc32', '-c'], kernel), kernel.length), scratch);
    expect(execFileSync('ls', ['-A', scratch]).toString()).toBe('');
  });
  it('inspects ELF notes without trusting their sizes', () => {
    const b = elf();
    b.writeBigUInt64LE(1n << 40n, 96); // note segment far larger than the file
    expect(() => inspectElfKernel(b)).toThrow(/outside the file/);
  });
});
