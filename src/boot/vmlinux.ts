// Turns a distribution's bzImage into the uncompressed ELF vmlinux that Firecracker (x86-64 loads ELF only) and
// cloud-hypervisor (PVH entry) boot. The compressed kernel sits at a place the x86 boot header states exactly
// (payload_offset/payload_length, boot protocol 2.08+), so no scanning for magic numbers is needed.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Img2vmError } from '../core/errors.js';
import { run, type ToolName } from '../tools/index.js';

export type KernelCompression = 'gzip' | 'lz4' | 'xz' | 'lzma' | 'zstd' | 'bzip2' | 'lzo';

export interface Vmlinux {
  elf: Buffer;
  compression: KernelCompression;
  /** The kernel carries a Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), which cloud-hypervisor and QEMU's microvm use. */
  pvh: boolean;
}

interface Payload {
  data: Buffer;
  compression: KernelCompression;
  /** The decompressed size the kernel build appends to every payload. */
  size: number;
}

const LZ4_LEGACY_MAGIC = 0x184c2102;

function bad(message: string): Img2vmError {
  return new Img2vmError(
    'badImage',
    `kernel: ${message}`,
    'the guest kernel must be an x86-64 bzImage (boot protocol 2.08 or newer)',
  );
}

/** Locates the compressed vmlinux inside a bzImage from its setup header. */
export function bzImagePayload(img: Buffer): Payload {
  if (img.length < 0x250 || img.toString('latin1', 0x202, 0x206) !== 'HdrS')
    throw bad('no x86 boot header ("HdrS") — not a bzImage');
  const version = img.readUInt16LE(0x206);
  if (version < 0x208)
    throw bad(`boot protocol ${version >> 8}.${(version & 0xff).toString().padStart(2, '0')} has no payload fields`);
  const setupSects = img[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + img.readUInt32LE(0x248);
  const length = img.readUInt32LE(0x24c);
  if (length < 8 || start + length > img.length) throw bad('the payload the header names lies outside the file');
  const payload = img.subarray(start, start + length);
  // The build appends the decompressed size (4 bytes, little-endian) after the compressed stream.
  const data = payload.subarray(0, length - 4);
  const size = payload.readUInt32LE(length - 4);
  return { data, compression: compressionOf(data), size };
}

function compressionOf(d: Buffer): KernelCompression {
  if (d[0] === 0x1f && (d[1] === 0x8b || d[1] === 0x9e)) return 'gzip';
  if (d.readUInt32LE(0) === LZ4_LEGACY_MAGIC) return 'lz4';
  if (d.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (d.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (d.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (d[0] === 0x89 && d.toString('latin1', 1, 4) === 'LZO') return 'lzo';
  if (d[0] === 0x5d && d[1] === 0 && d[2] === 0) return 'lzma';
  throw bad(`unknown compression (payload starts ${d.subarray(0, 6).toString('hex')})`);
}

/** Decodes the LZ4 legacy frame the kernel uses: after the magic, blocks of [u32 compressed length][LZ4 block]. */
export function lz4LegacyDecode(src: Buffer, size: number): Buffer {
  if (src.length < 4 || src.readUInt32LE(0) !== LZ4_LEGACY_MAGIC) throw bad('LZ4 stream without the legacy magic');
  const out = Buffer.alloc(size);
  let o = 0;
  let p = 4;
  while (p + 4 <= src.length) {
    const n = src.readUInt32LE(p);
    p += 4;
    if (n === LZ4_LEGACY_MAGIC) continue; // concatenated legacy streams restart with the magic
    if (p + n > src.length) throw bad('LZ4 block runs past the end of the payload');
    o = lz4Block(src, p, p + n, out, o);
    p += n;
  }
  if (o !== size) throw bad(`LZ4 stream decoded to ${o} bytes, the header states ${size}`);
  return out;
}

function lz4Length(src: Buffer, p: number, end: number, n: number): [number, number] {
  if (n !== 15) return [n, p];
  let b;
  do {
    if (p >= end) throw bad('LZ4 length runs past its block');
    b = src[p++]!;
    n += b;
  } while (b === 255);
  return [n, p];
}

function lz4Block(src: Buffer, p: number, end: number, out: Buffer, o: number): number {
  while (p < end) {
    const token = src[p++]!;
    let lit;
    [lit, p] = lz4Length(src, p, end, token >>> 4);
    if (p + lit > end || o + lit > out.length) throw bad('LZ4 literals run past their block or the stated size');
    src.copy(out, o, p, p + lit);
    o += lit;
    p += lit;
    if (p === end) break; // the last sequence of a block holds literals only
    if (p + 2 > end) throw bad('LZ4 match offset cut off');
    const offset = src[p]! | (src[p + 1]! << 8);
    p += 2;
    if (offset === 0 || offset > o) throw bad('LZ4 match points before the start of the output');
    let len;
    [len, p] = lz4Length(src, p, end, token & 15);
    len += 4;
    if (o + len > out.length) throw bad('LZ4 match runs past the stated size');
    let s = o - offset;
    if (offset >= len) {
      out.copyWithin(o, s, s + len);
      o += len;
    } else {
      // Overlapping match: a run that repeats the last `offset` bytes; copy forward byte by byte.
      for (let i = 0; i < len; i++) out[o++] = out[s++]!;
    }
  }
  return o;
}

/** Decompresses with a host tool, through files in `scratch` (the tools write binary output we must not decode). */
async function decompressWithTool(p: Payload, scratch: string, signal?: AbortSignal): Promise<Buffer> {
  const tools: Record<
    Exclude<KernelCompression, 'gzip' | 'lz4'>,
    [ToolName, string, (i: string, o: string) => string[]]
  > = {
    xz: ['xz', '.xz', (i) => ['--decompress', '--single-stream', '--keep', '--force', i]],
    lzma: ['xz', '.lzma', (i) => ['--decompress', '--format=lzma', '--keep', '--force', i]],
    zstd: ['zstd', '.zst', (i, o) => ['--decompress', '--quiet', '--force', i, '-o', o]],
    bzip2: ['bzip2', '.bz2', (i) => ['--decompress', '--keep', '--force', i]],
    lzo: ['lzop', '.lzo', (i, o) => ['--decompress', '--force', i, '-o', o]],
  };
  const [tool, ext, args] = tools[p.compression as keyof typeof tools];
  const out = join(scratch, 'vmlinux.decompressed');
  const inp = out + ext;
  try {
    await writeFile(inp, p.data);
    await run(tool, args(inp, out), { signal });
    return await readFile(out);
  } finally {
    await rm(inp, { force: true });
    await rm(out, { force: true });
  }
}

export interface ElfKernel {
  pvh: boolean;
}

/** Checks that `b` is an x86-64 ELF executable and reports whether it carries the PVH entry note. */
export function inspectElfKernel(b: Buffer): ElfKernel {
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46) throw bad('the decompressed payload is not an ELF file');
  if (b[4] !== 2 || b[5] !== 1) throw bad('the decompressed payload is not a little-endian 64-bit ELF');
  if (b.readUInt16LE(18) !== 62)
    throw bad(`the decompressed payload is ELF for machine ${b.readUInt16LE(18)}, not x86-64 (62)`);
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  if (phentsize < 56 || phoff + phnum * phentsize > b.length) throw bad('ELF program headers lie outside the file');
  let pvh = false;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (b.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    const off = Number(b.readBigUInt64LE(ph + 8));
    const end = off + Number(b.readBigUInt64LE(ph + 32));
    if (end > b.length) throw bad('ELF note segment lies outside the file');
    for (let n = off; n + 12 <= end;) {
      const namesz = b.readUInt32LE(n);
      const descsz = b.readUInt32LE(n + 4);
      const type = b.readUInt32LE(n + 8);
      const name = b.toString('latin1', n + 12, n + 12 + Math.max(0, namesz - 1));
      if (name === 'Xen' && type === 18 /* XEN_ELFNOTE_PHYS32_ENTRY */) pvh = true;
      n += 12 + align4(namesz) + align4(descsz);
    }
  }
  return { pvh };
}

const align4 = (n: number) => (n + 3) & ~3;

/** bzImage → ELF vmlinux. `scratch` is a private directory for the host decompressors the rarer formats need. */
export async function extractVmlinux(bzImage: Buffer, scratch: string, signal?: AbortSignal): Promise<Vmlinux> {
  const p = bzImagePayload(bzImage);
  let elf: Buffer;
  if (p.compression === 'lz4') elf = lz4LegacyDecode(p.data, p.size);
  else if (p.compression === 'gzip') {
    try {
      elf = gunzipSync(p.data);
    } catch (e) {
      throw bad(`gzip payload does not decompress: ${(e as Error).message}`);
    }
  } else elf = await decompressWithTool(p, scratch, signal);
  if (elf.length !== p.size) throw bad(`payload decompressed to ${elf.length} bytes, the kernel states ${p.size}`);
  return { elf, compression: p.compression, ...inspectElfKernel(elf) };
}
