// What run and test share: inspecting the disk, choosing firmware and accelerator, and owning the QEMU process.
import { constants } from 'node:fs';
import { access, copyFile, lstat, mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ARCH, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import { defaultPlatform } from '../source/index.js';
import { kernelArchOf } from '../kernel/index.js';
import type { Scope } from '../core/scope.js';
import { spawnTool, stopProcess, type ToolProcess } from '../tools/process.js';
import { diskFormat } from './disk.js';
import { chooseAccel, tcgThreadFrom, type AccelChoice } from './accel.js';
import {
  AAVMF_CANDIDATES,
  detectArch,
  detectFirmware,
  findOvmf,
  readDiskHead,
  type FirmwareGuess,
} from './firmware.js';
import { readFirecrackerConfig, type DirectBoot } from '../output/rootfs.js';
import {
  qemuArgs,
  type Accel,
  type Boot,
  type DiskFormat,
  type Firmware,
  type OvmfFiles,
  type Publish,
  type Share,
  type TcgThread,
} from './qemu.js';

export interface MachineOptions {
  /** A disk, or a direct-kernel output: NAME.firecracker.json, or the NAME.ext4 beside one. */
  disk: string;
  /** Forced by --uefi / --bios; detected from the partition table otherwise. */
  firmware?: Firmware;
  memMiB: number;
  cpus: number;
  snapshot: boolean;
  publish: readonly Publish[];
  console: 'terminal' | 'pipe';
  /** `img2vm test`'s nonce for this boot, handed to the guest (see qemuArgs). */
  bootNonce?: string;
  /** `img2vm run IMAGE`: the run config disk and virtio-fs shares (see qemuArgs). */
  runConfig?: string;
  shares?: readonly Share[];
  stdinSocket?: string;
  winsizeSocket?: string;
}

export interface Machine {
  /** The guest's architecture, read from the disk (its root partition type), and why. */
  arch: GuestArch;
  archReason: string;
  disk: string;
  format: DiskFormat;
  firmware: Boot;
  firmwareReason: string;
  accel: Accel;
  accelReason: string;
  console: 'terminal' | 'pipe';
  argv: string[];
}

/** Everything QEMU needs, with temporary files (the UEFI variable store) released by the scope. */
export async function prepareMachine(o: MachineOptions, scope: Scope): Promise<Machine> {
  if (/\.firecracker\.json$/i.test(o.disk)) return prepareDirect(o, await readFirecrackerConfig(o.disk));
  const disk = resolve(o.disk);
  const st = await stat(disk).catch(() => undefined);
  if (!st?.isFile())
    throw new Img2vmError('usage', `disk not found: ${o.disk}`, 'give the path of a disk written by img2vm');
  const format = await diskFormat(disk);
  // A bare file system with a Firecracker config beside it is img2vm's direct-kernel output.
  const config = join(dirname(disk), `${basename(disk).replace(/\.[^.]*$/, '')}.firecracker.json`);
  const hasConfig = format === 'raw' && !!(await stat(config).catch(() => undefined))?.isFile();
  const head = await readDiskHead(disk, format);
  const guess = detectFirmware(head);
  if (hasConfig && guess.table === 'none') {
    return prepareDirect(o, await readFirecrackerConfig(config));
  }
  const { arch, reason: archReason } = detectArch(head);
  const { firmware, firmwareReason } = firmwareFor(o, arch, guess);
  const { accel, reason: accelReason, tcgThread } = await accelFor(arch);
  let ovmf: OvmfFiles | undefined;
  if (firmware === 'uefi') {
    const found = arch === 'arm64' ? await findOvmf(AAVMF_CANDIDATES, 'arm64') : await findOvmf();
    const dir = await mkdtemp(join(tmpdir(), 'img2vm-vm-'));
    scope.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
    // UEFI writes boot entries into its variable store: each run gets a fresh copy, the template stays intact.
    const vars = join(dir, 'OVMF_VARS.fd');
    await copyFile(found.vars, vars);
    ovmf = { code: found.code, vars };
  }
  const argv = qemuArgs({
    arch,
    disk,
    format,
    firmware,
    ovmf,
    accel,
    tcgThread,
    memMiB: o.memMiB,
    cpus: o.cpus,
    snapshot: o.snapshot,
    publish: o.publish,
    console: o.console,
    bootNonce: o.bootNonce,
    runConfig: o.runConfig,
    shares: o.shares,
    stdinSocket: o.stdinSocket,
    winsizeSocket: o.winsizeSocket,
  });
  return { arch, archReason, disk, format, firmware, firmwareReason, accel, accelReason, console: o.console, argv };
}

/** --uefi/--bios, else what the partition table says; an arm64 disk boots through UEFI whatever it says. */
function firmwareFor(
  o: MachineOptions,
  arch: GuestArch,
  guess: FirmwareGuess,
): { firmware: Firmware; firmwareReason: string } {
  if (arch === 'arm64') {
    if (o.firmware === 'bios')
      throw new Img2vmError(
        'usage',
        `--bios cannot boot ${o.disk}: it is an arm64 disk, and arm64 machines boot through UEFI only`,
        'leave out --bios',
      );
    return { firmware: 'uefi', firmwareReason: 'arm64 machines boot through UEFI' };
  }
  if (o.firmware) return { firmware: o.firmware, firmwareReason: `--${o.firmware}` };
  return { firmware: guess.firmware, firmwareReason: guess.reason };
}

/** The architecture of a direct-kernel output's kernel, from its header (amd64 when it is none img2vm knows). */
async function directKernelArch(kernel: string): Promise<GuestArch> {
  const fh = await open(kernel, 'r');
  try {
    const head = Buffer.alloc(64 << 10);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return kernelArchOf(head.subarray(0, bytesRead))?.arch === 'arm64' ? 'arm64' : 'amd64';
  } finally {
    await fh.close();
  }
}

/** The accelerator, and under TCG how its vCPUs share host threads (IMG2VM_TCG_THREAD). */
async function accelFor(arch: GuestArch): Promise<AccelChoice & { tcgThread: TcgThread }> {
  const choice = await acceleratorFor(arch);
  const tcgThread = tcgThreadFrom();
  if (choice.accel === 'tcg' && tcgThread === 'single')
    return { ...choice, reason: `${choice.reason}; vCPUs take turns on one thread (IMG2VM_TCG_THREAD)`, tcgThread };
  return { ...choice, tcgThread };
}

/** KVM only for a guest of the host's own architecture; another architecture's guest is emulated (TCG). */
async function acceleratorFor(arch: GuestArch, host: string = defaultPlatform().architecture): Promise<AccelChoice> {
  if (arch !== host) return { accel: 'tcg', reason: `an ${arch} guest on an ${host} host is emulated` };
  if (arch === 'amd64') return chooseAccel();
  // The KVM probe is an x86 program: an arm64 host takes KVM when it is there, or what IMG2VM_ACCEL says.
  const forced = process.env.IMG2VM_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return { accel: forced, reason: 'IMG2VM_ACCEL' };
  const kvm = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  return kvm ? { accel: 'kvm', reason: '/dev/kvm is accessible' } : { accel: 'tcg', reason: 'no /dev/kvm' };
}

/**
 * A direct-kernel output booted the way Firecracker would boot it, on QEMU's microvm machine: the config's kernel
 * (the ELF vmlinux), initrd, kernel command line and raw disks on virtio-mmio. Firecracker itself needs KVM;
 * this runs under TCG too.
 */
async function prepareDirect(o: MachineOptions, c: DirectBoot): Promise<Machine> {
  if (o.firmware) {
    throw new Img2vmError(
      'usage',
      `--${o.firmware} does not apply: ${o.disk} is a direct-kernel output, booted without firmware`,
      'leave out --uefi/--bios',
    );
  }
  await checkDirectFiles(c);
  const [root, ...more] = c.drives;
  const arch = await directKernelArch(c.kernel);
  const { accel, reason: accelReason, tcgThread } = await accelFor(arch);
  const tscKhz = arch === 'amd64' ? await hostCpuKhz() : undefined;
  const argv = qemuArgs({
    arch,
    disk: root!.path,
    format: 'raw',
    firmware: 'direct',
    accel,
    tcgThread,
    direct: { kernel: c.kernel, initrd: c.initrd, cmdline: c.cmdline, moreDisks: more, tscKhz },
    memMiB: o.memMiB,
    cpus: o.cpus,
    snapshot: o.snapshot,
    publish: o.publish,
    console: o.console,
    bootNonce: o.bootNonce,
    runConfig: o.runConfig,
    shares: o.shares,
    stdinSocket: o.stdinSocket,
    winsizeSocket: o.winsizeSocket,
  });
  return {
    arch,
    archReason: `${basename(c.kernel)}'s own header`,
    disk: root!.path,
    format: 'raw',
    firmware: 'direct',
    firmwareReason:
      arch === 'arm64'
        ? `${basename(c.config)}: ${basename(c.kernel)} on QEMU virt, disks on virtio-mmio found through the device tree as Firecracker presents them`
        : `${basename(c.config)}: ${basename(c.kernel)} on QEMU microvm, disks on virtio-mmio found through ACPI as Firecracker presents them`,
    accel,
    accelReason,
    console: o.console,
    argv,
  };
}

/**
 * The kernel, initrd and drives a Firecracker config names are loaded into the guest or handed to it, so they must
 * be the files img2vm wrote beside the config: regular files in its directory, not links to elsewhere.
 */
async function checkDirectFiles(c: DirectBoot): Promise<void> {
  const files: [string, string][] = [
    ['kernel', c.kernel],
    ...(c.initrd ? [['initrd', c.initrd] as [string, string]] : []),
    ...c.drives.map((d, i) => [i ? `drive ${i}` : 'root drive', d.path] as [string, string]),
  ];
  const dir = dirname(c.config);
  for (const [what, path] of files) {
    if (dirname(path) !== dir) {
      throw new Img2vmError(
        'usage',
        `refusing ${basename(c.config)}: its ${what} ${path} is not beside the config`,
        'img2vm boots only the files it wrote next to the config (./NAME...), so a config cannot hand other host files to the guest',
      );
    }
    const st = await lstat(path).catch(() => undefined);
    if (!st)
      throw new Img2vmError(
        'usage',
        `the ${what} named by ${basename(c.config)} is missing: ${path}`,
        'keep the files img2vm wrote beside the config together',
      );
    if (!st.isFile())
      throw new Img2vmError(
        'usage',
        `refusing ${basename(c.config)}: its ${what} ${path} is not a regular file (a link or device?)`,
        'img2vm boots only the regular files it wrote next to the config',
      );
  }
}

/** The host CPU's clock in kHz from /proc/cpuinfo (an emulated guest's TSC runs at the host's rate). */
export async function hostCpuKhz(cpuinfo = '/proc/cpuinfo'): Promise<number | undefined> {
  const text = await readFile(cpuinfo, 'utf8').catch(() => '');
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(text)?.[1]);
  return mhz > 0 ? Math.round(mhz * 1000) : undefined;
}

/** What a console session needs of a running QEMU (tests give it a fake): its serial console and its end. */
export interface ConsoleProcess {
  stdout: Readable;
  stderr?: Readable;
  stdin: Writable;
  /** Settles once QEMU has exited and its output has been read to the end. */
  exited: Promise<{ exitCode?: number; signal?: string }>;
  /** Stops QEMU now (idempotent); the scope would do it otherwise. */
  stop: () => Promise<void>;
}

/**
 * Starts QEMU with its serial console on pipes; the scope stops it (SIGTERM, then SIGKILL after 3 s) whatever
 * happens next. `img2vm run` relays the console to the terminal itself, so it can tell the workload's output
 * from img2vm's own lines.
 */
export function startQemu(m: Machine, scope: Scope): ConsoleProcess {
  const child: ToolProcess = spawnTool(ARCH[m.arch].qemu, m.argv, { stdio: 'pipe', dieWithParent: true });
  const stop = scope.defer('stop QEMU', () => stopProcess(child, 3000));
  // QEMU may exit while a session types; the exit is reported on its own, the broken pipe is not news.
  child.stdin!.on('error', () => undefined);
  const exited = child.then((r) => ({ exitCode: r.exitCode, signal: r.signal }));
  return { stdout: child.stdout!, stderr: child.stderr ?? undefined, stdin: child.stdin!, exited, stop };
}
