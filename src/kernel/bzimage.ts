// Reads a kernel's release string (uname -r) from its file: the bzImage setup header, or the "Linux version" banner of an uncompressed image.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { Img2vmError } from '../core/errors.js';

const HDRS_OFFSET = 0x202;
const KERNEL_VERSION_PTR = 0x20e;
const SETUP_BASE = 0x200;
const BANNER = Buffer.from('Linux version ');
/** Uncompressed kernels (vmlinux) are tens of MiB; scanning further would only serve hostile input. */
const MAX_SCAN = 512 << 20;

/** The release from a bzImage header (x86 boot protocol ≥ 2.00), or undefined when the bytes are not one. */
export function versionFromSetupHeader(head: Buffer): string | undefined {
  if (head.length < KERNEL_VERSION_PTR + 2 || head.toString('latin1', HDRS_OFFSET, HDRS_OFFSET + 4) !== 'HdrS')
    return undefined;
  if (head.readUInt16LE(0x206) < 0x0200) return undefined;
  const ptr = head.readUInt16LE(KERNEL_VERSION_PTR);
  if (ptr === 0) return undefined;
  const at = ptr + SETUP_BASE;
  if (at >= head.length) return undefined;
  const end = head.indexOf(0, at);
  return releaseToken(head.toString('latin1', at, end < 0 ? Math.min(head.length, at + 256) : Math.min(end, at + 256)));
}

/** "6.12.9+deb13-cloud-amd64 (debian-kernel@...) #1 SMP ..." → "6.12.9+deb13-cloud-amd64", if it looks like a release. */
function releaseToken(s: string): string | undefined {
  const tok = s.trim().split(/\s/)[0] ?? '';
  return /^[0-9]+\.[0-9]+[A-Za-z0-9._+~-]{0,120}$/.test(tok) ? tok : undefined;
}

/** The "Linux version" banner of a gzip-compressed kernel image, decompressed as a stream (at most MAX_SCAN). */
async function gzipBanner(vmlinuz: string): Promise<string | undefined> {
  let carry = Buffer.alloc(0);
  let seen = 0;
  const gunzip = createReadStream(vmlinuz).pipe(createGunzip());
  try {
    for await (const c of gunzip as AsyncIterable<Buffer>) {
      const buf = Buffer.concat([carry, c]);
      const i = buf.indexOf(BANNER);
      if (i >= 0 && i + BANNER.length + 130 <= buf.length)
        return releaseToken(buf.toString('latin1', i + BANNER.length, i + BANNER.length + 130));
      carry = Buffer.from(buf.subarray(Math.max(0, buf.length - 200)));
      seen += c.length;
      if (seen > MAX_SCAN) return undefined;
    }
  } catch {
    return undefined;
  } finally {
    gunzip.destroy();
  }
  return undefined;
}

export async function kernelVersionOf(vmlinuz: string): Promise<string> {
  const fh = await open(vmlinuz, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new Img2vmError(
      'usage',
      `cannot read the kernel ${vmlinuz}: ${e.code ?? e.message}`,
      'give the path of a kernel image (vmlinuz/bzImage)',
    );
  });
  try {
    const head = Buffer.alloc(64 << 10);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const v = versionFromSetupHeader(head.subarray(0, bytesRead));
    if (v) return v;
    // A gzip-compressed image (Debian's arm64 vmlinuz: a gzipped Image) has its banner inside the stream.
    if (head[0] === 0x1f && head[1] === 0x8b) {
      const gz = await gzipBanner(vmlinuz);
      if (gz) return gz;
    }
    // An uncompressed kernel carries its banner in plain text.
    const chunk = Buffer.alloc(4 << 20);
    let pos = 0;
    let carry = Buffer.alloc(0);
    while (pos < MAX_SCAN) {
      const r = await fh.read(chunk, 0, chunk.length, pos);
      if (r.bytesRead === 0) break;
      const buf = Buffer.concat([carry, chunk.subarray(0, r.bytesRead)]);
      for (let i = buf.indexOf(BANNER); i >= 0; i = buf.indexOf(BANNER, i + 1)) {
        if (i + BANNER.length + 130 > buf.length && r.bytesRead === chunk.length) break;
        const rel = releaseToken(
          buf.toString('latin1', i + BANNER.length, Math.min(buf.length, i + BANNER.length + 130)),
        );
        if (rel) return rel;
      }
      carry = Buffer.from(buf.subarray(Math.max(0, buf.length - 200)));
      pos += r.bytesRead;
    }
  } finally {
    await fh.close();
  }
  throw new Img2vmError(
    'badImage',
    `${vmlinuz} is not a Linux kernel image (no bzImage header, no "Linux version" banner)`,
    'give a bzImage/vmlinuz or an uncompressed vmlinux',
  );
}
