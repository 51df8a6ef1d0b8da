// Which format a disk is opened as, decided from its name and never by QEMU's probing, and refusing disks that name other host files.
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import { run } from '../tools/index.js';
import type { DiskFormat } from './qemu.js';

/**
 * The extensions of the files img2vm writes. A guest can write anything into a raw disk, a qcow2 header naming a
 * host file included, so a raw disk is opened as raw whatever its first bytes say: probing would hand that file
 * to the guest on the next boot.
 */
export const FORMAT_BY_EXTENSION: Readonly<Record<string, DiskFormat>> = {
  raw: 'raw',
  img: 'raw',
  ext4: 'raw',
  qcow2: 'qcow2',
  vmdk: 'vmdk',
  vhdx: 'vhdx',
  vhd: 'vpc',
  vdi: 'vdi',
};

/** The format img2vm wrote a file in, from its extension; undefined for names img2vm does not write. */
export function formatFromName(path: string): DiskFormat | undefined {
  const m = /\.([A-Za-z0-9]+)$/.exec(basename(path));
  return m ? FORMAT_BY_EXTENSION[m[1]!.toLowerCase()] : undefined;
}

/** Enough of a file's start for a qcow2 header with its extensions, or a VMDK's sparse header. */
const HEAD = 64 * 1024;
const QCOW2_MAGIC = 0x514649fb;
/** Header extension "external data file name". */
const QCOW2_EXT_DATA_FILE = 0x44415441;
/** Incompatible feature bit 2: guest data lives in an external data file. */
const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;

/** Why a qcow2 header may not be booted (it names another file, or is not qcow2 at all); undefined when it is fine. */
export function qcow2HeaderProblem(head: Buffer): string | undefined {
  if (head.length < 72 || head.readUInt32BE(0) !== QCOW2_MAGIC) return 'it is not a qcow2 file (no qcow2 header)';
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) return `it is qcow2 version ${version}, which img2vm does not write`;
  if (head.readBigUInt64BE(8) !== 0n || head.readUInt32BE(16) !== 0) return 'it has a backing file';
  if (version === 2) return undefined;
  if (head.length < 104) return 'its qcow2 header is truncated';
  if ((head.readBigUInt64BE(72) & QCOW2_INCOMPAT_DATA_FILE) !== 0n) return 'it keeps its data in an external data file';
  // Header extensions follow the header (header_length at 100), each type, length, data padded to 8 bytes.
  let off = head.readUInt32BE(100);
  while (off + 8 <= head.length) {
    const type = head.readUInt32BE(off);
    const len = head.readUInt32BE(off + 4);
    if (type === 0) break;
    if (type === QCOW2_EXT_DATA_FILE) return 'it names an external data file';
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return undefined;
}

/** Why a VMDK may not be booted: a text descriptor lists extent files anywhere on the host. */
export function vmdkHeaderProblem(head: Buffer): string | undefined {
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'KDMV') return undefined;
  if (/^\s*#\s*Disk DescriptorFile/i.test(head.toString('latin1', 0, Math.min(head.length, 256)))) {
    return 'it is a VMDK descriptor that names other files as its extents';
  }
  return 'it is not a single-file (sparse or stream-optimized) VMDK';
}

export function qemuImgInfoArgs(path: string, format: DiskFormat): string[] {
  // -f: qemu-img must not probe either; -U: a disk in use by a running guest can still be inspected.
  return ['info', '-f', format, '-U', '--output=json', path];
}

interface QemuImgInfo {
  format?: string;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type?: string; data?: { 'data-file'?: string; extents?: { filename?: string }[] } };
}

/** Why qemu-img's view of a disk may not be booted; undefined when it is one self-contained file. */
export function infoProblem(info: QemuImgInfo, path: string, format: DiskFormat): string | undefined {
  if (info.format !== format) return `qemu-img reads it as ${info.format ?? 'nothing'}, not ${format}`;
  if (info['backing-filename'] || info['full-backing-filename'])
    return `it has a backing file (${info['backing-filename'] ?? info['full-backing-filename']})`;
  const data = info['format-specific']?.data;
  if (data?.['data-file']) return `it keeps its data in an external data file (${data['data-file']})`;
  const others = (data?.extents ?? []).map((e) => e.filename).filter((f) => f !== undefined && f !== path);
  if (others.length) return `it names other files as extents (${others.join(', ')})`;
  return undefined;
}

async function readHead(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(HEAD);
    const { bytesRead } = await fh.read(buf, 0, HEAD, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

function refuse(path: string, format: DiskFormat, why: string): Img2vmError {
  return new Img2vmError(
    'usage',
    `refusing to boot ${path} as ${format}: ${why}`,
    'img2vm boots only self-contained disks it writes; a disk that names other files could hand host files to the guest (convert it: qemu-img convert -O qcow2 IN OUT.qcow2)',
  );
}

/**
 * The format to open a disk with, checked to be one self-contained file. Raw disks are not looked into: whatever
 * their bytes say, they are raw. Other formats are read header first (before any tool opens them), then through
 * qemu-img with the format given.
 */
export async function diskFormat(path: string): Promise<DiskFormat> {
  const format = formatFromName(path);
  if (!format) {
    throw new Img2vmError(
      'usage',
      `cannot tell the format of ${path} from its name`,
      `name the disk as img2vm writes it: ${Object.keys(FORMAT_BY_EXTENSION)
        .map((e) => `.${e}`)
        .join(', ')} (img2vm never lets QEMU guess a format)`,
    );
  }
  if (format === 'raw') return format;
  const headProblem =
    format === 'qcow2'
      ? qcow2HeaderProblem(await readHead(path))
      : format === 'vmdk'
        ? vmdkHeaderProblem(await readHead(path))
        : undefined;
  if (headProblem) throw refuse(path, format, headProblem);
  const r = await run('qemu-img', qemuImgInfoArgs(path, format), { reject: false });
  if (r.exitCode !== 0)
    throw refuse(
      path,
      format,
      `qemu-img cannot read it as ${format}: ${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''}`,
    );
  let info: QemuImgInfo;
  try {
    info = JSON.parse(r.stdout) as QemuImgInfo;
  } catch {
    throw refuse(path, format, 'qemu-img info printed no JSON');
  }
  const problem = infoProblem(info, path, format);
  if (problem) throw refuse(path, format, problem);
  return format;
}
