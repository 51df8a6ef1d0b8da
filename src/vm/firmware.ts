// Picks BIOS or UEFI from a disk's partition table (read as bytes), and finds the OVMF files UEFI needs.
import { constants } from 'node:fs';
import { access, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { archOfRootType, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import { run } from '../tools/index.js';
import type { DiskFormat, Firmware } from './qemu.js';

/** Enough for an MBR, a GPT header and its 128 entries with 512- or 4096-byte sectors. */
export const HEAD_BYTES = 1024 * 1024;

const ESP_GUID = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
const BIOS_BOOT_GUID = '21686148-6449-6e6f-744e-656564454649';
const MBR_GPT_PROTECTIVE = 0xee;
const MBR_EFI_SYSTEM = 0xef;

export type PartitionTable = 'mbr' | 'gpt' | 'hybrid' | 'none';

export interface FirmwareGuess {
  firmware: Firmware;
  table: PartitionTable;
  /** One line for humans: which evidence decided. */
  reason: string;
}

interface MbrEntry {
  type: number;
  start: number;
  sectors: number;
}

function mbrEntries(head: Uint8Array): MbrEntry[] {
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const out: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const o = 446 + i * 16;
    const type = head[o + 4]!;
    if (type !== 0) out.push({ type, start: dv.getUint32(o + 8, true), sectors: dv.getUint32(o + 12, true) });
  }
  return out;
}

/** Mixed-endian GUID bytes as the usual text form. */
export function guidToString(b: Uint8Array): string {
  const h = (i: number) => b[i]!.toString(16).padStart(2, '0');
  const seq = (idx: number[]) => idx.map(h).join('');
  return `${seq([3, 2, 1, 0])}-${seq([5, 4])}-${seq([7, 6])}-${seq([8, 9])}-${seq([10, 11, 12, 13, 14, 15])}`;
}

/** Partition type GUIDs of a GPT found at LBA 1 (512- or 4096-byte sectors), or undefined. */
export function gptTypes(head: Uint8Array): string[] | undefined {
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  for (const sector of [512, 4096]) {
    if (head.byteLength < sector + 92) continue;
    const sig = Buffer.from(head.subarray(sector, sector + 8)).toString('latin1');
    if (sig !== 'EFI PART') continue;
    const entriesLba = Number(dv.getBigUint64(sector + 72, true));
    const count = dv.getUint32(sector + 80, true);
    const size = dv.getUint32(sector + 84, true);
    if (size < 128 || count === 0) return [];
    const types: string[] = [];
    for (let i = 0; i < Math.min(count, 1024); i++) {
      const o = entriesLba * sector + i * size;
      if (o + 16 > head.byteLength) break;
      const g = head.subarray(o, o + 16);
      if (g.every((x) => x === 0)) continue;
      types.push(guidToString(g));
    }
    return types;
  }
  return undefined;
}

/**
 * Decides the firmware from the first bytes of a disk:
 * - GPT with an EFI System partition and no BIOS boot partition → UEFI;
 * - GPT with a BIOS boot partition → BIOS, also when an ESP exists too (a hybrid disk boots either way, and
 *   BIOS needs no firmware files);
 * - MBR → BIOS, except an MBR whose only way to boot is an EFI System partition (type 0xef, no boot code);
 * - no partition table → BIOS (a superfloppy or a disk with just boot code).
 */
export function detectFirmware(head: Uint8Array): FirmwareGuess {
  if (head.byteLength < 512 || head[510] !== 0x55 || head[511] !== 0xaa) {
    return { firmware: 'bios', table: 'none', reason: 'no partition table found; trying BIOS' };
  }
  const entries = mbrEntries(head);
  const hasBootCode = head.subarray(0, 440).some((x) => x !== 0);
  const protective = entries.some((e) => e.type === MBR_GPT_PROTECTIVE);
  const types = protective ? gptTypes(head) : undefined;
  if (types) {
    const esp = types.includes(ESP_GUID);
    const biosBoot = types.includes(BIOS_BOOT_GUID);
    const hybridMbr = entries.some((e) => e.type !== MBR_GPT_PROTECTIVE);
    if (esp && biosBoot)
      return {
        firmware: 'bios',
        table: 'hybrid',
        reason: 'GPT with a BIOS boot and an EFI System partition (hybrid): BIOS',
      };
    if (biosBoot) return { firmware: 'bios', table: 'gpt', reason: 'GPT with a BIOS boot partition: BIOS' };
    if (esp && hybridMbr && hasBootCode)
      return { firmware: 'bios', table: 'hybrid', reason: 'GPT with a hybrid MBR and boot code: BIOS' };
    if (esp) return { firmware: 'uefi', table: 'gpt', reason: 'GPT with an EFI System partition: UEFI' };
    return hasBootCode
      ? { firmware: 'bios', table: 'gpt', reason: 'GPT without an EFI System partition, MBR boot code present: BIOS' }
      : { firmware: 'uefi', table: 'gpt', reason: 'GPT without a BIOS boot partition or MBR boot code: UEFI' };
  }
  if (!hasBootCode && entries.some((e) => e.type === MBR_EFI_SYSTEM)) {
    return { firmware: 'uefi', table: 'mbr', reason: 'MBR with an EFI System partition and no boot code: UEFI' };
  }
  return { firmware: 'bios', table: 'mbr', reason: 'MBR partition table: BIOS' };
}

/**
 * The guest's architecture from the disk itself: the Discoverable Partitions root type img2vm (and systemd-repart)
 * give the root partition names it. A disk without one (MBR, another tool's GPT) is taken as amd64, and says so.
 */
export function detectArch(head: Uint8Array): { arch: GuestArch; reason: string } {
  const types = head.byteLength >= 512 && head[510] === 0x55 && head[511] === 0xaa ? gptTypes(head) : undefined;
  for (const t of types ?? []) {
    const arch = archOfRootType(t);
    if (arch) return { arch, reason: `its GPT root partition has the ${arch} root type` };
  }
  return { arch: 'amd64', reason: 'no architecture-specific root partition type: amd64' };
}

/** The first HEAD_BYTES of the guest-visible disk, whatever the container format. */
export async function readDiskHead(path: string, format: DiskFormat): Promise<Uint8Array> {
  if (format === 'raw') {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(HEAD_BYTES);
      const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
  // qemu-img dd reads through the format driver, so every format img2vm writes is sniffed the same way.
  const dir = await mkdtemp(join(tmpdir(), 'img2vm-head-'));
  try {
    const out = join(dir, 'head.raw');
    await run('qemu-img', [
      'dd',
      '-U',
      '-f',
      format,
      '-O',
      'raw',
      `bs=${HEAD_BYTES}`,
      'count=1',
      `if=${path}`,
      `of=${out}`,
    ]);
    return await readFile(out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Firmware code and variable-store template pairs, newest layout first (Debian, Fedora, Arch). */
export const OVMF_CANDIDATES: readonly { code: string; vars: string }[] = [
  { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd' },
  { code: '/usr/share/OVMF/OVMF_CODE.fd', vars: '/usr/share/OVMF/OVMF_VARS.fd' },
  { code: '/usr/share/edk2/ovmf/OVMF_CODE.fd', vars: '/usr/share/edk2/ovmf/OVMF_VARS.fd' },
  { code: '/usr/share/edk2/x64/OVMF_CODE.4m.fd', vars: '/usr/share/edk2/x64/OVMF_VARS.4m.fd' },
];

/** arm64 UEFI firmware (AAVMF, Debian's qemu-efi-aarch64; Fedora's edk2-aarch64), code and variable-store template. */
export const AAVMF_CANDIDATES: readonly { code: string; vars: string }[] = [
  { code: '/usr/share/AAVMF/AAVMF_CODE.fd', vars: '/usr/share/AAVMF/AAVMF_VARS.fd' },
  { code: '/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw', vars: '/usr/share/edk2/aarch64/vars-template-pflash.raw' },
];

/** Finds OVMF (without Secure Boot: img2vm's EFI binaries are unsigned), or AAVMF for arm64 guests. */
export async function findOvmf(
  candidates = OVMF_CANDIDATES,
  arch: GuestArch = 'amd64',
): Promise<{ code: string; vars: string }> {
  for (const c of candidates) {
    try {
      await access(c.code, constants.R_OK);
      await access(c.vars, constants.R_OK);
      return c;
    } catch {
      /* next */
    }
  }
  if (arch === 'arm64')
    throw new Img2vmError(
      'toolMissing',
      'arm64 UEFI firmware (AAVMF) is missing',
      'install it: apt-get install qemu-efi-aarch64',
    );
  throw new Img2vmError(
    'toolMissing',
    'UEFI firmware (OVMF) is missing',
    'install it: apt-get install ovmf (or boot with --bios)',
  );
}
