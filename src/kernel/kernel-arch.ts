// Which architecture a kernel image is for, read from its own header: the x86 boot protocol's "HdrS", the arm64
// Image header's "ARM\x64", the PE machine of an EFI zboot image, an ELF's e_machine; gzip-wrapped images unwrapped.
import { open } from 'node:fs/promises';
import { constants, gunzipSync } from 'node:zlib';
import { ARCH, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';

/** What the header says and where: the architecture and the evidence, for an error that names both. */
export interface KernelArch {
  arch: GuestArch | 'other';
  evidence: string;
}

const PE_MACHINES: Record<number, GuestArch> = { 0x8664: 'amd64', 0xaa64: 'arm64' };

/** The architecture of a kernel image from its first bytes, or undefined when they are no header img2vm knows. */
export function kernelArchOf(head: Buffer, depth = 0): KernelArch | undefined {
  if (head.length >= 0x206 && head.toString('latin1', 0x202, 0x206) === 'HdrS')
    return { arch: 'amd64', evidence: 'an x86 bzImage ("HdrS" boot header)' };
  if (head.length >= 0x3c && head.toString('latin1', 0x38, 0x3c) === 'ARM\x64')
    return { arch: 'arm64', evidence: 'an arm64 Image ("ARM\\x64" header)' };
  if (head.length >= 0x40 && head.toString('latin1', 0, 2) === 'MZ' && head.toString('latin1', 4, 8) === 'zimg') {
    const pe = head.readUInt32LE(0x3c);
    if (pe + 6 <= head.length && head.toString('latin1', pe, pe + 4) === 'PE\0\0') {
      const m = head.readUInt16LE(pe + 4);
      return { arch: PE_MACHINES[m] ?? 'other', evidence: `an EFI zboot image for PE machine 0x${m.toString(16)}` };
    }
  }
  if (head.length >= 20 && head.toString('latin1', 0, 4) === '\x7fELF') {
    const m = head.readUInt16LE(18);
    const arch = (Object.keys(ARCH) as GuestArch[]).find((a) => ARCH[a].elfMachine === m);
    return { arch: arch ?? 'other', evidence: `an ELF kernel for machine ${m}` };
  }
  if (depth === 0 && head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    // Debian's arm64 vmlinuz is a gzip-compressed Image: its header is in the first bytes of the stream.
    let inner: Buffer;
    try {
      inner = gunzipSync(head, { finishFlush: constants.Z_SYNC_FLUSH });
    } catch {
      return undefined;
    }
    const k = kernelArchOf(inner.subarray(0, 64 << 10), 1);
    return k && { ...k, evidence: `${k.evidence}, gzip-compressed` };
  }
  return undefined;
}

/** Reads a kernel file's header and refuses a kernel of another architecture than the guest's, naming both. */
export async function checkKernelArch(vmlinuz: string, arch: GuestArch, what: string): Promise<void> {
  const fh = await open(vmlinuz, 'r');
  let head: Buffer;
  try {
    const b = Buffer.alloc(64 << 10);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    head = b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const k = kernelArchOf(head);
  if (!k || k.arch === arch) return;
  throw new Img2vmError(
    'usage',
    `${what} is ${k.arch === 'other' ? 'a kernel of another architecture' : `an ${k.arch} kernel`} (${k.evidence}), and the image is linux/${arch}`,
    `give a linux/${arch} kernel, or convert the image's linux/${k.arch === 'other' ? 'amd64' : k.arch} variant (--platform)`,
  );
}
