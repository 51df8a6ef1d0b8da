// arm64 disks from this (amd64) host with no daemon and no emulation during the conversion: a two-platform OCI
// index whose arm64 image is a busybox userland from Debian's busybox-static arm64 package gives an arm64 disk by
// --platform, and `img2vm run` boots it on qemu-system-aarch64 (TCG, AAVMF), its CMD running as its USER, with its
// output and exit code relayed.
import { execa } from 'execa';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { debianPackageFile } from '../../fixtures/debian-deb.js';
import { layerOf, writeMultiPlatformLayout, type ProcessConfig } from '../../fixtures/oci.js';
import { img2vm } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', IMG2VM_ACCEL: 'tcg' };
const APPLETS = ['sh', 'echo', 'id', 'uname', 'cat'];
/** The workload says which machine and user it runs as, then exits 3 (relayed as img2vm run's own exit code). */
const CONFIG: ProcessConfig = {
  Cmd: ['/bin/sh', '-c', 'echo "workload on $(uname -m) as uid $(id -u) gid $(id -g)"; exit 3'],
  User: 'app',
};

let tmp: string;
let layout: string;
const timings: string[] = [];

/** A busybox userland with a user "app" (uid 1000). */
async function userland(busybox: Buffer): Promise<Buffer> {
  return layerOf([
    { name: 'bin/', dir: true },
    { name: 'bin/busybox', mode: 0o755, content: busybox },
    ...APPLETS.map((a) => ({ name: `bin/${a}`, symlink: 'busybox' })),
    { name: 'etc/', dir: true },
    { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' },
    { name: 'etc/group', content: 'root:x:0:\napp:x:1000:\n' },
    { name: 'home/', dir: true },
    { name: 'home/app/', dir: true, mode: 0o755 },
  ]);
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-arm64-'));
  // Debian's arm64 busybox, fetched once through img2vm's verified archive client and cached
  const arm64 = await readFile(await debianPackageFile('busybox-static', 'arm64', 'bin/busybox'));
  layout = join(tmp, 'layout');
  await writeMultiPlatformLayout(layout, [
    { architecture: 'amd64', layers: [await userland(await readFile('/bin/busybox'))], config: CONFIG },
    { architecture: 'arm64', layers: [await userland(arm64)], config: CONFIG },
  ]);
}, 600_000);

afterAll(async () => {
  if (timings.length) console.log(`arm64:\n${timings.join('\n')}`);
  await rm(tmp, { recursive: true, force: true });
});

describe('arm64 from an amd64 host', () => {
  it('--platform picks the arm64 image of an index; its disk boots on aarch64, CMD as USER, exit code relayed', async () => {
    const out = join(tmp, 'arm64.qcow2');
    const t0 = performance.now();
    const r = await img2vm([`oci:${layout}`, '--platform', 'linux/arm64', '--init', 'img2vm', '-o', out, '--json'], {
      env: NO_DAEMON,
    });
    expect(r.exitCode, r.all).toBe(0);
    timings.push(`convert arm64: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const p = JSON.parse(r.stdout).plan as {
      architecture: { arch: string };
      kernel: { version: string };
      boot: { mode: string; loaders: string[] };
      layout: { table: string };
    };
    expect(p.architecture.arch).toBe('arm64');
    expect(p.kernel.version).toMatch(/-cloud-arm64$/);
    expect(p.boot).toMatchObject({ mode: 'uefi', loaders: ['grub-efi'] });
    expect(p.layout.table).toBe('gpt');

    const t1 = performance.now();
    const run = await execa('bin/img2vm', ['run', out, '--timeout', '900', '--verbose'], {
      reject: false,
      all: true,
      stdin: 'ignore',
      env: NO_DAEMON,
    });
    expect(run.exitCode, run.all).toBe(3);
    expect(run.stdout).toContain('workload on aarch64 as uid 1000 gid 1000');
    timings.push(`run arm64 to exit (TCG): ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    // img2vm test reads the same exit protocol (its boot nonce through SMBIOS, which AAVMF passes on)
    const t = await img2vm(['test', out, '--expect-exit', '3', '--timeout', '900'], { env: NO_DAEMON });
    expect(t.exitCode, t.all).toBe(0);
    const wrong = await img2vm(['test', out, '--expect-exit', '0', '--timeout', '900'], { env: NO_DAEMON });
    expect(wrong.exitCode, wrong.all).not.toBe(0);
  });

  it("--bootloader systemd-boot for arm64: Debian's systemd-bootaa64.efi, verified, loads the Image from the ESP", async () => {
    const out = join(tmp, 'arm64-sdboot.qcow2');
    const r = await img2vm(
      [`oci:${layout}`, '--platform', 'linux/arm64', '--init', 'img2vm', '--bootloader', 'systemd-boot', '-o', out],
      { env: NO_DAEMON },
    );
    expect(r.exitCode, r.all).toBe(0);
    const t1 = performance.now();
    const run = await execa('bin/img2vm', ['run', out, '--timeout', '900'], {
      reject: false,
      all: true,
      stdin: 'ignore',
      env: NO_DAEMON,
    });
    expect(run.exitCode, run.all).toBe(3);
    expect(run.stdout).toContain('workload on aarch64 as uid 1000 gid 1000');
    timings.push(`run arm64 systemd-boot to exit (TCG): ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  });

  it('--format rootfs for arm64: the Image for microVM runners; its Firecracker config boots on QEMU virt', async () => {
    const out = join(tmp, 'arm64.ext4');
    const r = await img2vm([`oci:${layout}`, '--platform', 'linux/arm64', '--init', 'img2vm', '-o', out], {
      env: NO_DAEMON,
    });
    expect(r.exitCode, r.all).toBe(0);
    // the kernel runners load is the uncompressed arm64 Image ("ARM\x64" at 0x38)
    const head = (await readFile(join(tmp, 'arm64.vmlinux'))).subarray(0, 64);
    expect(head.toString('latin1', 0x38, 0x3c)).toBe('ARM\x64');
    const ch = await readFile(join(tmp, 'arm64.cloud-hypervisor.sh'), 'utf8');
    expect(ch).toContain('console=ttyAMA0');
    const t1 = performance.now();
    const run = await execa('bin/img2vm', ['run', join(tmp, 'arm64.firecracker.json'), '--timeout', '900'], {
      reject: false,
      all: true,
      stdin: 'ignore',
      env: NO_DAEMON,
    });
    expect(run.exitCode, run.all).toBe(3);
    expect(run.stdout).toContain('workload on aarch64 as uid 1000 gid 1000');
    timings.push(`run arm64 direct kernel to exit (TCG): ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  });

  it('the same index gives an amd64 disk by --platform linux/amd64, and the plan says which', async () => {
    const r = await img2vm(
      ['plan', `oci:${layout}`, '--platform', 'linux/amd64', '--init', 'img2vm', '-o', 'x.qcow2'],
      {
        env: NO_DAEMON,
      },
    );
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/^arch +linux\/amd64 \(the image's config\)$/m);
    expect(r.stdout).toMatch(/^boot +hybrid: grub-bios \+ grub-efi/m);
    const a = await img2vm(
      ['plan', `oci:${layout}`, '--platform', 'linux/arm64', '--init', 'img2vm', '-o', 'x.qcow2'],
      {
        env: NO_DAEMON,
      },
    );
    expect(a.stdout).toMatch(/^arch +linux\/arm64 \(the image's config\)$/m);
    expect(a.stdout).toMatch(/^boot +uefi: grub-efi/m);
    // and refuses what arm64 cannot do, before anything is written
    const bios = await img2vm(
      [`oci:${layout}`, '--platform', 'linux/arm64', '--init', 'img2vm', '--boot', 'bios', '-o', join(tmp, 'b.qcow2')],
      { env: NO_DAEMON },
    );
    expect(bios.exitCode, bios.all).toBe(2);
    expect(bios.stderr).toMatch(/--boot bios cannot boot a linux\/arm64 guest/);
  });

  it('a --kernel of the other architecture is refused from its own header, naming both, and nothing is written', async () => {
    // An x86 bzImage's setup header: "HdrS", boot protocol 2.15, the version string the header points at
    const bz = Buffer.alloc(0x4000);
    bz.write('MZ', 0, 'latin1');
    bz.write('HdrS', 0x202, 'latin1');
    bz.writeUInt16LE(0x020f, 0x206);
    bz.writeUInt16LE(0x1000 - 0x200, 0x20e);
    bz.write('6.1.0-99-amd64 (test) #1 SMP\0', 0x1000, 'latin1');
    const vmlinuz = join(tmp, 'vmlinuz-6.1.0-99-amd64');
    await writeFile(vmlinuz, bz);
    const out = join(tmp, 'wrong-kernel.qcow2');
    const r = await img2vm(
      [`oci:${layout}`, '--platform', 'linux/arm64', '--init', 'img2vm', '--kernel', vmlinuz, '-o', out],
      { env: NO_DAEMON },
    );
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toMatch(
      /--kernel \S+ is an amd64 kernel \(an x86 bzImage \("HdrS" boot header\)\), and the image is linux\/arm64/,
    );
    expect(await stat(out).catch(() => undefined)).toBeUndefined();
  });
});
