// What run and test share: inspecting the disk, choosing firmware and accelerator, and owning the QEMU process.
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import { run } from '../tools/index.js';
import { spawnTool, stopProcess, type ToolProcess } from '../tools/process.js';
import { chooseAccel } from './accel.js';
import { detectFirmware, findOvmf, readDiskHead } from './firmware.js';
import { DISK_FORMATS, qemuArgs, type Accel, type DiskFormat, type Firmware, type OvmfFiles, type Publish } from './qemu.js';

export interface MachineOptions {
  disk: string;
  /** Forced by --uefi / --bios; detected from the partition table otherwise. */
  firmware?: Firmware;
  memMiB: number;
  cpus: number;
  snapshot: boolean;
  publish: readonly Publish[];
  console: 'terminal' | 'pipe';
}

export interface Machine {
  disk: string;
  format: DiskFormat;
  firmware: Firmware;
  firmwareReason: string;
  accel: Accel;
  accelReason: string;
  console: 'terminal' | 'pipe';
  argv: string[];
}

/** Asks qemu-img what the file is; only formats img2vm writes are accepted. */
export async function diskFormat(path: string): Promise<DiskFormat> {
  const r = await run('qemu-img', ['info', '-U', '--output=json', path]);
  let format: string | undefined;
  try {
    format = (JSON.parse(r.stdout) as { format?: string }).format;
  } catch {
    /* reported below */
  }
  if (!format || !(DISK_FORMATS as readonly string[]).includes(format)) {
    throw new Img2vmError('usage', `${path}: unsupported disk format "${format ?? 'unknown'}"`, `img2vm runs ${DISK_FORMATS.join(', ')} disks`);
  }
  return format as DiskFormat;
}

/** Everything QEMU needs, with temporary files (the UEFI variable store) released by the scope. */
export async function prepareMachine(o: MachineOptions, scope: Scope): Promise<Machine> {
  const disk = resolve(o.disk);
  const st = await stat(disk).catch(() => undefined);
  if (!st?.isFile()) throw new Img2vmError('usage', `disk not found: ${o.disk}`, 'give the path of a disk written by img2vm');
  const format = await diskFormat(disk);
  let firmware = o.firmware;
  let firmwareReason = firmware ? `--${firmware}` : '';
  if (!firmware) {
    const guess = detectFirmware(await readDiskHead(disk, format));
    firmware = guess.firmware;
    firmwareReason = guess.reason;
  }
  const { accel, reason: accelReason } = await chooseAccel();
  let ovmf: OvmfFiles | undefined;
  if (firmware === 'uefi') {
    const found = await findOvmf();
    const dir = await mkdtemp(join(tmpdir(), 'img2vm-vm-'));
    scope.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
    // UEFI writes boot entries into its variable store: each run gets a fresh copy, the template stays intact.
    const vars = join(dir, 'OVMF_VARS.fd');
    await copyFile(found.vars, vars);
    ovmf = { code: found.code, vars };
  }
  const argv = qemuArgs({
    disk, format, firmware, ovmf, accel,
    memMiB: o.memMiB, cpus: o.cpus, snapshot: o.snapshot, publish: o.publish, console: o.console,
  });
  return { disk, format, firmware, firmwareReason, accel, accelReason, console: o.console, argv };
}

export interface Running {
  child: ToolProcess;
  /** Stops QEMU now (idempotent); the scope would do it otherwise. */
  stop: () => Promise<void>;
}

/** Starts QEMU; the scope stops it (SIGTERM, then SIGKILL after 3 s) whatever happens next. */
export function startQemu(m: Machine, scope: Scope): Running {
  const child = spawnTool('qemu-system-x86_64', m.argv, { stdio: m.console === 'terminal' ? 'inherit' : 'pipe' });
  const stop = scope.defer('stop QEMU', () => stopProcess(child, 3000));
  return { child, stop };
}
