// Exact QEMU command lines: every flag a guest starts with is part of the contract (isolation, firmware, console).
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import {
  kvmProbeArgs,
  parseCpus,
  parseMem,
  parsePublish,
  parseTimeout,
  qemuArgs,
  qemuEscape,
} from '../../src/vm/qemu.js';

describe('qemuArgs', () => {
  it('arm64: the virt machine, every emulated CPU feature under TCG, AAVMF in pflash, PCI virtio, PL011 console', () => {
    expect(
      qemuArgs({
        arch: 'arm64',
        disk: '/d/disk.qcow2',
        format: 'qcow2',
        firmware: 'uefi',
        ovmf: { code: '/usr/share/AAVMF/AAVMF_CODE.fd', vars: '/tmp/x/OVMF_VARS.fd' },
        accel: 'tcg',
        memMiB: 1024,
        cpus: 2,
        snapshot: true,
        publish: [{ host: 8080, guest: 80 }],
        console: 'pipe',
        bootNonce: 'ab'.repeat(16),
      }),
    ).toEqual([
      '-nodefaults',
      '-machine',
      'virt',
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-m',
      '1024',
      '-smp',
      '2',
      '-drive',
      'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd',
      '-drive',
      'if=pflash,format=raw,unit=1,file=/tmp/x/OVMF_VARS.fd',
      '-drive',
      'file=/d/disk.qcow2,if=virtio,format=qcow2',
      '-smbios',
      `type=11,value=img2vm.nonce=${'ab'.repeat(16)}`,
      '-snapshot',
      '-netdev',
      'user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80',
      '-device',
      'virtio-net-pci,netdev=net0,romfile=',
      '-nographic',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-no-reboot',
    ]);
    const direct = qemuArgs({
      arch: 'arm64',
      disk: '/o/vm.ext4',
      format: 'raw',
      firmware: 'direct',
      direct: { kernel: '/o/vm.vmlinux', cmdline: 'root=/dev/vda rw console=ttyS0', tscKhz: 2e6, moreDisks: [] },
      accel: 'tcg',
      memMiB: 512,
      cpus: 1,
      snapshot: true,
      publish: [],
      console: 'pipe',
    });
    // virt (not microvm), no firmware, the Image on -kernel, virtio-mmio disks, PL011 as the console, no TSC rate
    expect(direct.slice(0, 5)).toEqual(['-nodefaults', '-machine', 'virt', '-accel', 'tcg']);
    expect(direct).not.toContain('-drive if=pflash');
    expect(direct.slice(direct.indexOf('-kernel'), direct.indexOf('-kernel') + 4)).toEqual([
      '-kernel',
      '/o/vm.vmlinux',
      '-append',
      'root=/dev/vda rw console=ttyS0 console=ttyAMA0',
    ]);
    expect(direct).toContain('virtio-blk-device,drive=disk0');
    const bios = { arch: 'arm64', disk: '/d', format: 'raw', firmware: 'bios', accel: 'tcg' } as const;
    const rest = { memMiB: 512, cpus: 1, snapshot: true, publish: [], console: 'pipe' } as const;
    expect(() => qemuArgs({ ...bios, ...rest })).toThrow(/arm64 guests boot through UEFI only/);
  });

  it('BIOS, TCG, no network, snapshot, headless console', () => {
    expect(
      qemuArgs({
        disk: '/d/disk.qcow2',
        format: 'qcow2',
        firmware: 'bios',
        accel: 'tcg',
        memMiB: 1024,
        cpus: 2,
        snapshot: true,
        publish: [],
        console: 'pipe',
      }),
    ).toEqual([
      '-nodefaults',
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-m',
      '1024',
      '-smp',
      '2',
      '-drive',
      'file=/d/disk.qcow2,if=virtio,format=qcow2',
      '-snapshot',
      '-nic',
      'none',
      '-nographic',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-no-reboot',
    ]);
  });

  it('direct kernel: Firecracker-like microvm, disks on virtio-mmio found through ACPI only, TSC rate under TCG', () => {
    const direct = {
      kernel: '/o/vm.vmlinux',
      initrd: '/o/vm.initrd.img',
      cmdline: 'root=/dev/vda rw console=ttyS0',
      tscKhz: 2596134,
      moreDisks: [{ path: '/o/data,1.ext4', readOnly: true }],
    };
    expect(
      qemuArgs({
        disk: '/o/vm.ext4',
        format: 'raw',
        firmware: 'direct',
        direct,
        accel: 'tcg',
        memMiB: 512,
        cpus: 1,
        snapshot: true,
        publish: [{ host: 2222, guest: 22 }],
        console: 'pipe',
      }),
    ).toEqual([
      '-nodefaults',
      '-machine',
      'microvm,acpi=on,auto-kernel-cmdline=off',
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-m',
      '512',
      '-smp',
      '1',
      '-kernel',
      '/o/vm.vmlinux',
      '-initrd',
      '/o/vm.initrd.img',
      '-append',
      'root=/dev/vda rw console=ttyS0 tsc_early_khz=2596134',
      '-drive',
      'id=disk0,file=/o/vm.ext4,if=none,format=raw',
      '-device',
      'virtio-blk-device,drive=disk0',
      '-drive',
      'id=disk1,file=/o/data,,1.ext4,if=none,format=raw,readonly=on',
      '-device',
      'virtio-blk-device,drive=disk1',
      '-snapshot',
      '-netdev',
      'user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22',
      '-device',
      'virtio-net-device,netdev=net0',
      '-nographic',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-no-reboot',
    ]);
    // KVM guests read kvmclock: the kernel command line is passed exactly as the config has it.
    const kvm = qemuArgs({
      disk: '/o/vm.ext4',
      format: 'raw',
      firmware: 'direct',
      direct: { ...direct, moreDisks: [] },
      accel: 'kvm',
      memMiB: 512,
      cpus: 1,
      snapshot: true,
      publish: [],
      console: 'pipe',
    });
    expect(kvm[kvm.indexOf('-append') + 1]).toBe('root=/dev/vda rw console=ttyS0');
  });

  it('UEFI, KVM, published ports on loopback only, persistent, terminal console', () => {
    expect(
      qemuArgs({
        disk: '/d/a,b.vhdx',
        format: 'vhdx',
        firmware: 'uefi',
        ovmf: { code: '/fw/CODE.fd', vars: '/tmp/x/VARS.fd' },
        accel: 'kvm',
        memMiB: 2048,
        cpus: 4,
        snapshot: false,
        publish: [
          { host: 2222, guest: 22 },
          { host: 8080, guest: 80 },
        ],
        console: 'terminal',
      }),
    ).toEqual([
      '-nodefaults',
      '-machine',
      'q35',
      '-accel',
      'kvm',
      '-cpu',
      'host',
      '-m',
      '2048',
      '-smp',
      '4',
      '-drive',
      'if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd',
      '-drive',
      'if=pflash,format=raw,unit=1,file=/tmp/x/VARS.fd',
      '-drive',
      'file=/d/a,,b.vhdx,if=virtio,format=vhdx',
      '-netdev',
      'user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80',
      '-device',
      'virtio-net-pci,netdev=net0,romfile=',
      '-nographic',
      '-serial',
      'mon:stdio',
      '-no-reboot',
    ]);
  });

  it('never forwards a port on anything but 127.0.0.1 and always restricts the guest', () => {
    const args = qemuArgs({
      disk: 'x',
      format: 'raw',
      firmware: 'bios',
      accel: 'tcg',
      memMiB: 512,
      cpus: 1,
      snapshot: true,
      publish: [{ host: 1, guest: 65535 }],
      console: 'pipe',
    });
    const net = args[args.indexOf('-netdev') + 1]!;
    expect(net.startsWith('user,id=net0,restrict=on,')).toBe(true);
    for (const f of net.split(',').filter((p) => p.startsWith('hostfwd=')))
      expect(f).toMatch(/^hostfwd=tcp:127\.0\.0\.1:\d+-:\d+$/);
  });

  it("hands img2vm test's boot nonce to the guest: an SMBIOS OEM string, or on microvm (no SMBIOS) the kernel command line", () => {
    const nonce = '0123456789abcdef'.repeat(2);
    const base = {
      format: 'raw' as const,
      accel: 'tcg' as const,
      memMiB: 512,
      cpus: 1,
      snapshot: true,
      publish: [],
      console: 'pipe' as const,
      bootNonce: nonce,
    };
    const bios = qemuArgs({ ...base, disk: '/d/disk.raw', firmware: 'bios' });
    expect(bios.slice(bios.indexOf('-smbios'), bios.indexOf('-smbios') + 2)).toEqual([
      '-smbios',
      `type=11,value=img2vm.nonce=${nonce}`,
    ]);
    const direct = qemuArgs({
      ...base,
      disk: '/o/vm.ext4',
      firmware: 'direct',
      direct: { kernel: '/o/k', cmdline: 'root=/dev/vda console=ttyS0', moreDisks: [] },
    });
    expect(direct).not.toContain('-smbios');
    expect(direct[direct.indexOf('-append') + 1]).toBe(`root=/dev/vda console=ttyS0 img2vm.nonce=${nonce}`);
    // Without one (img2vm run), nothing is added: the guest's readiness lines say nonce=none.
    expect(qemuArgs({ ...base, bootNonce: undefined, disk: '/d/disk.raw', firmware: 'bios' })).not.toContain('-smbios');
    expect(() => qemuArgs({ ...base, bootNonce: 'x,y', disk: '/d/disk.raw', firmware: 'bios' })).toThrow(
      /16 to 64 hex digits/,
    );
  });

  it('refuses UEFI without firmware files', () => {
    expect(() =>
      qemuArgs({
        disk: 'x',
        format: 'raw',
        firmware: 'uefi',
        accel: 'tcg',
        memMiB: 512,
        cpus: 1,
        snapshot: true,
        publish: [],
        console: 'pipe',
      }),
    ).toThrow(/OVMF/);
  });

  it('escapes commas in option values', () => {
    expect(qemuEscape('/a,b,,c')).toBe('/a,,b,,,,c');
  });

  it('probes KVM with a kernel that exits through isa-debug-exit', () => {
    expect(kvmProbeArgs('/tmp/p.bin')).toEqual([
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
      '/tmp/p.bin',
    ]);
  });

  it("TCG's vCPUs on one thread only when asked, and never a TCG option on KVM", () => {
    const base = {
      arch: 'amd64' as const,
      disk: '/d/x.raw',
      format: 'raw' as const,
      firmware: 'bios' as const,
      memMiB: 512,
      cpus: 2,
      snapshot: true,
      publish: [],
      console: 'pipe' as const,
    };
    const accelOf = (a: string[]) => a[a.indexOf('-accel') + 1];
    expect(accelOf(qemuArgs({ ...base, accel: 'tcg' }))).toBe('tcg');
    expect(accelOf(qemuArgs({ ...base, accel: 'tcg', tcgThread: 'multi' }))).toBe('tcg');
    expect(accelOf(qemuArgs({ ...base, accel: 'tcg', tcgThread: 'single' }))).toBe('tcg,thread=single');
    expect(accelOf(qemuArgs({ ...base, accel: 'kvm', tcgThread: 'single' }))).toBe('kvm');
  });
});

describe('option parsing', () => {
  const usage = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(Img2vmError);
      expect((e as Img2vmError).exitCode).toBe(2);
      return;
    }
    throw new Error('expected a usage error');
  };

  it('--publish', () => {
    expect(parsePublish('2222:22')).toEqual({ host: 2222, guest: 22 });
    for (const bad of ['22', '0:22', '2222:70000', 'a:b', '0.0.0.0:2222:22', '2222:22/udp'])
      usage(() => parsePublish(bad));
  });

  it('--mem', () => {
    expect(parseMem('1024M')).toBe(1024);
    expect(parseMem('2G')).toBe(2048);
    expect(parseMem('512')).toBe(512);
    for (const bad of ['1.5M', '10M', 'lots', '0']) usage(() => parseMem(bad));
  });

  it('--cpus and --timeout', () => {
    expect(parseCpus('4')).toBe(4);
    for (const bad of ['0', '-1', '1.5', 'two']) usage(() => parseCpus(bad));
    expect(parseTimeout('300')).toBe(300_000);
    expect(parseTimeout('0.5')).toBe(500);
    for (const bad of ['0', '-3', 'soon']) usage(() => parseTimeout(bad));
  });
});
