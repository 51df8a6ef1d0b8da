// QEMU command lines as pure data, so tests can assert every argument a guest is started with.
import type { GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import { MiB, parseSize } from '../core/units.js';
import { BOOT_NONCE, BOOT_NONCE_PREFIX } from './console.js';
import { RUN_CONFIG_PARAM, RUN_CONFIG_SERIAL, STDIN_PORT, WINSIZE_PORT } from './run-config.js';

export type Firmware = 'bios' | 'uefi';
/** How a machine starts: through firmware from a disk, or (direct-kernel outputs) with the kernel loaded by QEMU. */
export type Boot = Firmware | 'direct';
export type Accel = 'kvm' | 'tcg';
/** How TCG runs the vCPUs: a host thread each, or all on one in turn (see tcgThreadFrom). */
export type TcgThread = 'multi' | 'single';
/** Disk formats qemu-img reports for the files img2vm writes (vhd is "vpc" to QEMU). */
export type DiskFormat = 'raw' | 'qcow2' | 'vmdk' | 'vhdx' | 'vpc' | 'vdi';
export interface Publish {
  host: number;
  guest: number;
  /** The host address to listen on; 127.0.0.1 unless given (`img2vm run IMAGE -p ADDRESS:HOST:GUEST`). */
  address?: string;
}

/** A virtio-fs share: the guest mounts `tag`; virtiofsd serves it on the vhost-user socket. */
export interface Share {
  tag: string;
  socket: string;
}

export interface OvmfFiles {
  /** Read-only firmware code. */
  code: string;
  /** A private, writable copy of the variable store (never the system's template). */
  vars: string;
}

/** A Firecracker-style machine: kernel and initrd from the host, raw disks on virtio-mmio. */
export interface DirectKernel {
  kernel: string;
  initrd?: string;
  cmdline: string;
  /**
   * Under TCG only: the TSC rate to hand the guest kernel (tsc_early_khz=). microvm has no HPET or ACPI PM timer,
   * so when the kernel's PIT calibration misses under an emulated CPU's timing jitter (seen in about 1 boot in 7
   * here) it has no other reference and hangs. With KVM the guest reads kvmclock instead, as on Firecracker.
   */
  tscKhz?: number;
  /** Disks after the root disk, in order (vdb, vdc, ...). */
  moreDisks: readonly { path: string; readOnly: boolean }[];
}

export interface QemuOptions {
  /** The guest's architecture (default amd64): arm64 runs on QEMU's virt machine, UEFI only. */
  arch?: GuestArch;
  disk: string;
  format: DiskFormat;
  firmware: Boot;
  /** Required when firmware is 'direct'. */
  direct?: DirectKernel;
  /** Required when firmware is 'uefi'. */
  ovmf?: OvmfFiles;
  accel: Accel;
  /** TCG only: absent or 'multi' is QEMU's default. */
  tcgThread?: TcgThread;
  memMiB: number;
  cpus: number;
  /** Discard guest writes (the default): the disk file is never changed. */
  snapshot: boolean;
  publish: readonly Publish[];
  /**
   * 'terminal': the serial console and the QEMU monitor multiplexed on the user's terminal (Ctrl-a x quits).
   * 'pipe': the serial console alone on stdin/stdout, no monitor, so no input byte is ever taken as a command.
   */
  console: 'terminal' | 'pipe';
  /**
   * A nonce for this boot that the guest's readiness lines must carry (`img2vm test`). Firmware boots get it as an
   * SMBIOS OEM string (type 11), which the guest's kernel shows root in /sys/firmware/dmi/entries/11-*\/raw; microvm
   * has no SMBIOS, so a direct-kernel boot gets it on the kernel command line, which QEMU builds there anyway.
   */
  bootNonce?: string;
  /**
   * `img2vm run IMAGE`: the run config disk (raw, read-only, serial img2vm-run) and, on a direct-kernel boot, the
   * kernel parameter that makes img2vm's init read it (native/runcfg.c).
   */
  runConfig?: string;
  /** virtio-fs shares; guest memory is then a shared memfd, which vhost-user needs to reach it. */
  shares?: readonly Share[];
  /**
   * -i without -t: the workload's stdin as a virtio-serial port (img2vm.stdin) fed from this unix socket, so input
   * passes byte for byte and its end is an end of file; QEMU waits for img2vm to connect before the guest starts.
   */
  stdinSocket?: string;
  /** -t: the window size port, fed from this unix socket (QEMU does not wait for it). */
  winsizeSocket?: string;
}

/** QEMU option values are comma-separated; a literal comma is written twice. */
export function qemuEscape(value: string): string {
  return value.replaceAll(',', ',,');
}

export function qemuArgs(o: QemuOptions): string[] {
  const direct = o.firmware === 'direct' ? o.direct : undefined;
  if (o.firmware === 'direct' && !direct) throw new Error('qemuArgs: direct boot needs a kernel');
  // microvm is QEMU's Firecracker-like machine: no PCI, virtio-mmio devices. With ACPI on and the automatic
  // virtio_mmio.device= command line off, the guest finds its disks only through the ACPI DSDT, which is how
  // Firecracker (1.8 and newer) describes them — so a kernel that boots here finds its disks there too.
  const arm64 = o.arch === 'arm64';
  if (arm64 && o.firmware === 'bios') throw new Error('qemuArgs: arm64 guests boot through UEFI only');
  // virt is QEMU's generic arm64 machine (PCI, PL011 serial, SMBIOS for the firmware): what arm64 clouds resemble.
  const machine = arm64 ? 'virt' : direct ? 'microvm,acpi=on,auto-kernel-cmdline=off' : 'q35';
  const accel = o.accel === 'tcg' && o.tcgThread === 'single' ? 'tcg,thread=single' : o.accel;
  const args: string[] = ['-nodefaults', '-machine', machine, '-accel', accel];
  // KVM passes the host CPU through; under TCG "max" offers the x86-64-v2+ features newer distributions require
  // (and on arm64 every feature QEMU emulates).
  args.push('-cpu', o.accel === 'kvm' ? 'host' : 'max');
  args.push('-m', String(o.memMiB), '-smp', String(o.cpus));
  if (o.firmware === 'uefi') {
    if (!o.ovmf) throw new Error('qemuArgs: UEFI needs OVMF files');
    args.push(
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${qemuEscape(o.ovmf.code)}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${qemuEscape(o.ovmf.vars)}`,
    );
  }
  if (o.bootNonce !== undefined && !BOOT_NONCE.test(o.bootNonce))
    throw new Error(`qemuArgs: a boot nonce is 16 to 64 hex digits, not ${o.bootNonce}`);
  if (direct) {
    let cmdline =
      o.accel === 'tcg' && direct.tscKhz && !arm64
        ? `${direct.cmdline} tsc_early_khz=${direct.tscKhz}`
        : direct.cmdline;
    // virt's serial is a PL011 (Firecracker's config names its own ttyS0): the last console is /dev/console.
    if (arm64) cmdline += ' console=ttyAMA0';
    if (o.bootNonce) cmdline += ` ${BOOT_NONCE_PREFIX}${o.bootNonce}`;
    if (o.runConfig) cmdline += ` ${RUN_CONFIG_PARAM}`;
    args.push('-kernel', direct.kernel, ...(direct.initrd ? ['-initrd', direct.initrd] : []), '-append', cmdline);
    const disks = [{ path: o.disk, readOnly: false }, ...direct.moreDisks];
    disks.forEach((d, i) => {
      args.push(
        '-drive',
        `id=disk${i},file=${qemuEscape(d.path)},if=none,format=${o.format}${d.readOnly ? ',readonly=on' : ''}`,
      );
      args.push('-device', `virtio-blk-device,drive=disk${i}`);
    });
  } else if (o.runConfig) {
    // Another virtio disk would come first on the PCI bus, and SeaBIOS boots only the first: the root says it is the one.
    args.push('-drive', `id=root,file=${qemuEscape(o.disk)},if=none,format=${o.format}`);
    args.push('-device', 'virtio-blk-pci,drive=root,bootindex=0');
  } else args.push('-drive', `file=${qemuEscape(o.disk)},if=virtio,format=${o.format}`);
  if (o.runConfig) {
    args.push('-drive', `id=runcfg,file=${qemuEscape(o.runConfig)},if=none,format=raw,readonly=on`);
    args.push('-device', `${direct ? 'virtio-blk-device' : 'virtio-blk-pci'},drive=runcfg,serial=${RUN_CONFIG_SERIAL}`);
  }
  args.push(...shareArgs(o, !!direct));
  if (o.stdinSocket || o.winsizeSocket) args.push('-device', direct ? 'virtio-serial-device' : 'virtio-serial-pci');
  if (o.stdinSocket) {
    args.push('-chardev', `socket,id=stdin,path=${qemuEscape(o.stdinSocket)},server=on,wait=on`);
    args.push('-device', `virtserialport,chardev=stdin,name=${STDIN_PORT}`);
  }
  if (o.winsizeSocket) {
    args.push('-chardev', `socket,id=winsize,path=${qemuEscape(o.winsizeSocket)},server=on,wait=off`);
    args.push('-device', `virtserialport,chardev=winsize,name=${WINSIZE_PORT}`);
  }
  if (o.bootNonce && !direct) args.push('-smbios', `type=11,value=${BOOT_NONCE_PREFIX}${o.bootNonce}`);
  // A firmware boot's kernel command line is the disk's: the init learns of the run config from an OEM string.
  if (o.runConfig && !direct) args.push('-smbios', `type=11,value=${RUN_CONFIG_PARAM}`);
  if (o.snapshot) args.push('-snapshot');
  if (o.publish.length === 0) {
    args.push('-nic', 'none');
  } else {
    // restrict=on: the guest reaches nothing, not even the host; only these forwards, on loopback, reach it.
    const fwd = o.publish.map((p) => `,hostfwd=tcp:${p.address ?? '127.0.0.1'}:${p.host}-:${p.guest}`).join('');
    // romfile= drops iPXE: it costs seconds under TCG and would only try network boot.
    args.push(
      '-netdev',
      `user,id=net0,restrict=on${fwd}`,
      '-device',
      direct ? 'virtio-net-device,netdev=net0' : 'virtio-net-pci,netdev=net0,romfile=',
    );
  }
  // -nographic also routes SeaBIOS and GRUB output to the serial port (sercon), so boot failures are visible.
  args.push('-nographic');
  if (o.console === 'terminal') args.push('-serial', 'mon:stdio');
  else args.push('-serial', 'stdio', '-monitor', 'none');
  // A reboot (panic=N, a triple fault, `reboot`) ends QEMU instead of looping through the boot again.
  args.push('-no-reboot');
  return args;
}

/** virtio-fs devices: vhost-user needs the guest's RAM in a shared memfd, so the memory backend comes with them. */
function shareArgs(o: QemuOptions, direct: boolean): string[] {
  const shares = o.shares ?? [];
  if (!shares.length) return [];
  const args = ['-object', `memory-backend-memfd,id=mem,size=${o.memMiB}M,share=on`, '-machine', 'memory-backend=mem'];
  shares.forEach((s, i) => {
    if (!/^[a-z0-9-]{1,36}$/.test(s.tag)) throw new Error(`qemuArgs: a share tag is [a-z0-9-]{1,36}, not ${s.tag}`);
    args.push('-chardev', `socket,id=fs${i},path=${qemuEscape(s.socket)}`);
    args.push('-device', `${direct ? 'vhost-user-fs-device' : 'vhost-user-fs-pci'},chardev=fs${i},tag=${s.tag}`);
  });
  return args;
}

/** The command line of the KVM probe: a tiny multiboot kernel that exits QEMU through isa-debug-exit. */
export function kvmProbeArgs(kernel: string): string[] {
  return [
    '-nodefaults',
    '-machine',
    'q35',
    '-accel',
    'kvm',
    '-cpu',
    'host',
    '-m',
    '64',
    '-display',
    'none',
    '-serial',
    'none',
    '-monitor',
    'none',
    '-no-reboot',
    '-device',
    'isa-debug-exit,iobase=0xf4,iosize=0x04',
    '-kernel',
    kernel,
  ];
}

/** Parses --publish HOST:GUEST (TCP ports). */
export function parsePublish(text: string): Publish {
  const m = /^(\d{1,5}):(\d{1,5})$/.exec(text.trim());
  const host = m ? Number(m[1]) : 0;
  const guest = m ? Number(m[2]) : 0;
  if (!m || host < 1 || host > 65535 || guest < 1 || guest > 65535) {
    throw new Img2vmError(
      'usage',
      `invalid --publish "${text}"`,
      'use HOST:GUEST with TCP ports 1-65535, e.g. --publish 2222:22',
    );
  }
  return { host, guest };
}

/** Parses --mem: a size with a unit, or a bare number of MiB as QEMU's -m takes it. */
export function parseMem(text: string): number {
  const bytes = /^\s*\d+\s*$/.test(text) ? Number(text) * MiB : parseSize(text);
  const mib = Math.floor(bytes / MiB);
  if (bytes % MiB !== 0 || mib < 64) {
    throw new Img2vmError(
      'usage',
      `invalid --mem "${text}"`,
      'give whole MiB, at least 64M, e.g. --mem 1024M or --mem 2G',
    );
  }
  return mib;
}

export function parseCpus(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > 255) {
    throw new Img2vmError('usage', `invalid --cpus "${text}"`, 'give a whole number from 1 to 255');
  }
  return n;
}

/** Parses a timeout in seconds (fractions allowed); returns milliseconds. */
export function parseTimeout(text: string): number {
  const s = Number(text);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(text) || !(s > 0)) {
    throw new Img2vmError('usage', `invalid --timeout "${text}"`, 'give a number of seconds, e.g. --timeout 300');
  }
  return Math.round(s * 1000);
}
