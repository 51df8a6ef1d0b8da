// The direct-kernel output boots with QEMU's -kernel/-initrd and, through its Firecracker config, on a Firecracker-like
// microvm; a containerDisk holds a valid qcow2.
import { execa } from 'execa';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bzImagePayload, inspectElfKernel } from '../../src/boot/vmlinux.js';
import { debianFixture, img2vm, sh } from './helpers.js';

const BASE = 'img2vm-e2e:bookworm';
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'img2vm-direct-'));
  await debianFixture(BASE);
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** Boots QEMU with the given argv until `ready` appears on the serial console; resolves with the seconds taken. */
async function bootUntil(args: string[], ready: RegExp, timeoutS = 300): Promise<number> {
  const t0 = Date.now();
  const q = execa(
    'qemu-system-x86_64',
    [
      '-accel',
      'tcg',
      '-m',
      '1024',
      '-nographic',
      '-nodefaults',
      '-serial',
      'stdio',
      '-nic',
      'none',
      '-no-reboot',
      ...args,
    ],
    {
      reject: false,
      timeout: timeoutS * 1000,
      buffer: false,
    },
  );
  let seen = '';
  const ok = await new Promise<boolean>((resolve) => {
    q.stdout!.on('data', (d: Buffer) => {
      seen = (seen + d.toString('latin1')).slice(-20000);
      if (ready.test(seen)) resolve(true);
      if (/Kernel panic/.test(seen)) resolve(false);
    });
    void q.then(() => resolve(false));
  });
  q.kill('SIGKILL');
  await q;
  expect(ok, seen.slice(-3000)).toBe(true);
  return (Date.now() - t0) / 1000;
}

describe('--format rootfs', () => {
  it('writes NAME.ext4 with kernel, initrd and runner configs that boot directly', async () => {
    const out = join(work, 'vm.ext4');
    const r = await img2vm([BASE, '-o', out, '--json']);
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: 'rootfs', bootMode: 'direct-kernel', partitionTable: 'none' });
    expect((await readdir(work)).sort()).toEqual([
      'vm.cloud-hypervisor.sh',
      'vm.ext4',
      'vm.firecracker.json',
      'vm.initrd.img',
      'vm.vmlinux',
      'vm.vmlinuz',
    ]);
    await sh('e2fsck', ['-fn', out]);
    await sh('sh', ['-n', join(work, 'vm.cloud-hypervisor.sh')]);
    // The ELF kernel is the bzImage's payload, whole: the size the build recorded, an x86-64 ELF with the PVH entry.
    const vmlinux = await readFile(join(work, 'vm.vmlinux'));
    expect(vmlinux.length).toBe(bzImagePayload(await readFile(join(work, 'vm.vmlinuz'))).size);
    expect(inspectElfKernel(vmlinux).pvh).toBe(true);
    // QEMU users boot the bzImage with -kernel on a PC machine (virtio-pci).
    const s = await bootUntil(
      [
        '-kernel',
        join(work, 'vm.vmlinuz'),
        '-initrd',
        join(work, 'vm.initrd.img'),
        '-append',
        'root=/dev/vda rw console=ttyS0',
        '-drive',
        `file=${out},if=virtio,format=raw,snapshot=on`,
      ],
      /img2vm-ready: /,
    );
    console.log(`direct-kernel boot (q35, bzImage) to ready: ${s.toFixed(1)} s`);
  });

  it('boots as its Firecracker config says: the ELF vmlinux, boot_args and drive on a virtio-mmio microvm', async () => {
    const r = await img2vm(['test', join(work, 'vm.firecracker.json'), '--json', '--timeout', '240']);
    expect(r.exitCode, r.all).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ passed: true, firmware: 'direct', matched: 'marker', disk: join(work, 'vm.ext4') });
    console.log(`Firecracker config on QEMU microvm to ready: ${report.timings.ready} s`);
  });

  it('takes NAME.ext4 for its config, and refuses a firmware flag for it', async () => {
    const r = await img2vm(['test', join(work, 'vm.ext4'), '--uefi']);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toMatch(/--uefi does not apply: .*direct-kernel output/);
  });
});

describe('--format containerdisk', () => {
  it('writes an OCI archive whose layer holds a valid qcow2 at /disk/disk.qcow2', async () => {
    const out = join(work, 'cd.tar');
    const r = await img2vm([BASE, '-o', out, '--format', 'containerdisk', '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const x = join(work, 'x');
    await sh('mkdir', ['-p', x]);
    await sh('tar', ['-xf', out, '-C', x]);
    const index = JSON.parse((await sh('cat', [join(x, 'index.json')])).stdout);
    const manifest = JSON.parse(
      (await sh('cat', [join(x, 'blobs/sha256', index.manifests[0].digest.slice(7))])).stdout,
    );
    const layer = join(x, 'blobs/sha256', manifest.layers[0].digest.slice(7));
    const listing = (await sh('tar', ['--numeric-owner', '-tvf', layer])).stdout;
    expect(listing).toMatch(/107\/107 .* disk\/disk\.qcow2/);
    await sh('tar', ['-xf', layer, '-C', x]);
    await sh('qemu-img', ['check', join(x, 'disk', 'disk.qcow2')]);
  });
});
