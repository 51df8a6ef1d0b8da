// Boot modes × firmware, /boot partitions, first-boot growth and every output format, checked with real QEMU (TCG).
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { debianFixture, img2vm, sh } from './helpers.js';
import { FORMATS } from '../../src/output/index.js';
import { Scope } from '../../src/core/scope.js';
import { createRandom } from '../../src/core/random.js';

const BASE = 'img2vm-e2e:bookworm';
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'img2vm-boot-'));
  await debianFixture(BASE);
});
afterAll(() => rm(work, { recursive: true, force: true }));

async function convert(name: string, args: string[], env: Record<string, string> = {}) {
  const out = join(work, name);
  const r = await img2vm([BASE, '-o', out, '--json', ...args], { env });
  expect(r.exitCode, r.all).toBe(0);
  return { out, result: JSON.parse(r.stdout) };
}

async function bootTest(disk: string, args: string[] = []) {
  const r = await img2vm(['test', disk, '--timeout', '300', '--json', ...args]);
  expect(r.exitCode, r.all).toBe(0);
  return JSON.parse(r.stdout) as {
    passed: boolean;
    firmware: string;
    matched: string;
    timings: Record<string, number>;
  };
}

const timings: string[] = [];
afterAll(() => {
  if (timings.length) console.log(`boot timings (s to ready):\n${timings.join('\n')}`);
});

describe('boot modes', () => {
  it('hybrid (the default) is GPT with BIOS boot + ESP + root, and boots on SeaBIOS and on OVMF', async () => {
    const { out, result } = await convert('hybrid.qcow2', []);
    expect(result.bootMode).toBe('hybrid');
    expect(result.partitionTable).toBe('gpt');
    expect(result.partitions.map((p: { role: string }) => p.role)).toEqual(['bios-boot', 'esp', 'root']);
    const bios = await bootTest(out, ['--bios']);
    expect(bios).toMatchObject({ passed: true, firmware: 'bios', matched: 'marker' });
    const uefi = await bootTest(out, ['--uefi']);
    expect(uefi).toMatchObject({ passed: true, firmware: 'uefi', matched: 'marker' });
    timings.push(`hybrid/SeaBIOS ${bios.timings.ready}`, `hybrid/OVMF ${uefi.timings.ready}`);
  });

  it('uefi boots on OVMF (picked from the partition table)', async () => {
    const { out, result } = await convert('uefi.qcow2', ['--boot', 'uefi']);
    expect(result.partitions.map((p: { role: string }) => p.role)).toEqual(['esp', 'root']);
    const r = await bootTest(out);
    expect(r).toMatchObject({ passed: true, firmware: 'uefi' });
    timings.push(`uefi/OVMF ${r.timings.ready}`);
  });

  it("uefi with systemd-boot boots on OVMF, and the guest's kernel-install adds new kernels beside img2vm's", async () => {
    const { out, result } = await convert('sdboot.qcow2', [
      '--boot',
      'uefi',
      '--bootloader',
      'systemd-boot',
      '--password',
      'pw',
    ]);
    expect(result).toMatchObject({ bootMode: 'uefi', bootloader: 'systemd-boot', partitionTable: 'gpt' });
    expect(result.partitions.map((p: { role: string; size: number }) => [p.role, p.size])).toEqual([
      ['esp', 256 * 1024 * 1024],
      ['root', expect.any(Number)],
    ]);
    // The ESP is mounted by volume id; bootctl finds it; a kernel added the way an upgrade adds one becomes the default.
    const cmd = [
      'findmnt -n -o FSTYPE /boot/efi',
      'bootctl is-installed',
      'k=$(uname -r); kernel-install add 6.1.999-img2vm-test /boot/vmlinuz-$k /boot/initrd.img-$k',
      'ls /boot/efi/loader/entries',
      'bootctl list --no-pager 2>/dev/null | grep -E "title:.*default"',
    ].join(' && ');
    const r = await bootTest(out, ['--login', 'root:pw', '--run', cmd]);
    expect(r).toMatchObject({ passed: true, firmware: 'uefi' });
    const output = (r as unknown as { command: { output: string } }).command.output;
    expect(output).toMatch(/^vfat$/m);
    expect(output).toMatch(/^yes$/m);
    expect(output).toMatch(/img2vm-6\.1\.999-img2vm-test\.conf/);
    expect(output).toMatch(/img2vm-\d[^\s]*-cloud-amd64\.conf/);
    expect(output).toMatch(/title: .*\(6\.1\.999-img2vm-test\) \(default\)/);
    timings.push(`uefi+systemd-boot/OVMF ${r.timings.ready}`);
  });

  it('refuses systemd-boot for a disk that must also boot on BIOS', async () => {
    const r = await img2vm([BASE, '-o', join(work, 'no.qcow2'), '--bootloader', 'systemd-boot']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/systemd-boot boots UEFI only, not --boot hybrid/);
  });

  it('a separate /boot partition boots and is mounted', async () => {
    const { out, result } = await convert('bootpart.qcow2', ['--boot-partition', '256M', '--password', 'pw']);
    expect(result.partitions.map((p: { role: string }) => p.role)).toEqual(['bios-boot', 'esp', 'boot', 'root']);
    const r = await img2vm([
      'test',
      out,
      '--timeout',
      '300',
      '--login',
      'root:pw',
      '--run',
      'findmnt -no FSTYPE /boot && ls /boot/vmlinuz-*',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/ext4/);
  });

  it('grows the root file system on boot after the disk was enlarged', async () => {
    const { out } = await convert('grow.qcow2', ['--boot', 'bios']);
    await sh('qemu-img', ['resize', out, '+1G']);
    const r = await img2vm([
      'test',
      out,
      '--timeout',
      '300',
      '--expect',
      'img2vm-growroot: grew /dev/vda\\d to \\d+ MiB',
    ]);
    expect(r.exitCode, r.all).toBe(0);
  });
});

describe('output formats', () => {
  it('every format holds the same disk as the raw image', async () => {
    const fixed = { SOURCE_DATE_EPOCH: '1700000000' };
    const { out: raw, result } = await convert('ref.img', ['--seed', 'formats'], fixed);
    const sizes: string[] = [];
    // qcow2 is written directly (no raw disk, no qemu-img): the same seed gives the same disk as the raw one
    const { out: direct } = await convert('ref.qcow2', ['--seed', 'formats'], fixed);
    await sh('qemu-img', ['check', '-f', 'qcow2', direct]);
    await sh('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, direct]);
    sizes.push(`qcow2 (direct) ${(((await stat(direct)).blocks * 512) / 1048576).toFixed(0)} MiB`);
    const env = {
      work,
      signal: new AbortController().signal,
      sink: () => {},
      scope: new Scope(),
      random: createRandom('f'),
      epoch: 1_700_000_000,
      fixedEpoch: 1_700_000_000,
    };
    for (const f of FORMATS.filter((x) => ['vmdk', 'vhdx', 'vhd', 'vdi'].includes(x.id))) {
      const out = join(work, `disk.${f.id}`);
      await f.write({ disk: raw, dest: out, env, plan: result.plan, files: new Map() });
      const info = JSON.parse((await sh('qemu-img', ['info', '--output=json', out])).stdout);
      const qemuFmt = f.id === 'vhd' ? 'vpc' : f.id;
      expect(info.format).toBe(qemuFmt);
      expect(info['virtual-size']).toBe(result.diskSize);
      // qemu-img check knows only some formats' metadata; the others are covered by compare
      if (['qcow2', 'vmdk', 'vhdx', 'vdi'].includes(f.id)) await sh('qemu-img', ['check', '-f', qemuFmt, out]);
      await sh('qemu-img', ['compare', '-f', 'raw', '-F', qemuFmt, raw, out]);
      sizes.push(`${f.id} ${(info['actual-size'] / 1048576).toFixed(0)} MiB`);
    }
    const rawInfo = JSON.parse((await sh('qemu-img', ['info', '--output=json', raw])).stdout);
    console.log(
      `format sizes (virtual ${(result.diskSize / 1048576).toFixed(0)} MiB):\nraw ${(rawInfo['actual-size'] / 1048576).toFixed(0)} MiB\n${sizes.join('\n')}`,
    );
  });
});
