// The plan is what apply builds: `img2vm plan --json` and a conversion with the same options and seed, compared
// with what the disk holds, read back by sfdisk, the file systems' own superblocks, debugfs and mtools.
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConversionPlan, FileSystemPlan, GuestFile } from '../../src/core/plan.js';
import { layerOf, writeOciArchive } from '../../fixtures/oci.js';
import { debianFixture, dockerBuild, img2vm } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };
const SEED = 'plan-equals-build';

let tmp: string;
let busybox: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-plan-build-'));
  const applets = ['sh', 'getty', 'login', 'modprobe'];
  busybox = join(tmp, 'busybox.tar');
  await writeOciArchive(
    busybox,
    [
      await layerOf([
        { name: 'bin/', dir: true },
        { name: 'bin/busybox', mode: 0o755, content: await readFile('/bin/busybox') },
        ...applets.map((a) => ({ name: `bin/${a}`, symlink: 'busybox' })),
        { name: 'sbin/', dir: true },
        { name: 'sbin/getty', symlink: '../bin/busybox' },
        { name: 'etc/', dir: true },
        { name: 'etc/shadow', content: 'root:*:19000:0:99999:7:::\n', mode: 0o640 },
        { name: 'etc/group', content: 'root:x:0:\nshadow:x:42:\n' },
      ]),
    ],
    { Cmd: ['/bin/sh'] },
  );
}, 120_000);

afterAll(() => rm(tmp, { recursive: true, force: true }));

/** plan --json and convert --json with the same arguments; both must succeed. */
async function planAndBuild(
  src: string,
  out: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ plan: ConversionPlan; built: ConversionPlan }> {
  const p = await img2vm(['plan', src, '-o', out, '--seed', SEED, '--json', ...args], { env });
  expect(p.exitCode, p.all).toBe(0);
  const c = await img2vm([src, '-o', out, '--seed', SEED, '--json', ...args], { env });
  expect(c.exitCode, c.all).toBe(0);
  return {
    plan: JSON.parse(p.stdout) as ConversionPlan,
    built: (JSON.parse(c.stdout) as { plan: ConversionPlan }).plan,
  };
}

async function bytesAt(file: string, offset: number, n: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(n);
    await fh.read(b, 0, n, offset);
    return b;
  } finally {
    await fh.close();
  }
}

const uuidOf = (b: Buffer) =>
  `${b.toString('hex', 0, 4)}-${b.toString('hex', 4, 6)}-${b.toString('hex', 6, 8)}-${b.toString('hex', 8, 10)}-${b.toString('hex', 10, 16)}`;

/** An ext4 file system as its superblock says it: UUID, size in bytes, inode count. */
async function ext4At(disk: string, offset: number): Promise<{ uuid: string; size: number; inodes: number }> {
  const sb = await bytesAt(disk, offset + 1024, 1024);
  expect(sb.readUInt16LE(0x38), 'ext4 magic').toBe(0xef53);
  const blockSize = 1024 << sb.readUInt32LE(0x18);
  const blocks = sb.readUInt32LE(0x04) + sb.readUInt32LE(0x150) * 2 ** 32;
  return { uuid: uuidOf(sb.subarray(0x68, 0x78)), size: blocks * blockSize, inodes: sb.readUInt32LE(0) };
}

/** A FAT32 file system's volume id as blkid shows it (XXXX-XXXX) and its size. */
async function fatAt(disk: string, offset: number): Promise<{ uuid: string; size: number }> {
  const bs = await bytesAt(disk, offset, 512);
  const id = bs.readUInt32LE(0x43).toString(16).toUpperCase().padStart(8, '0');
  const sectors = bs.readUInt16LE(0x13) || bs.readUInt32LE(0x20);
  return { uuid: `${id.slice(0, 4)}-${id.slice(4)}`, size: sectors * bs.readUInt16LE(0x0b) };
}

/** The guest file as the disk holds it, read from the file system the plan puts it on. */
async function readGuestFile(
  disk: string,
  fss: FileSystemPlan[],
  f: GuestFile,
): Promise<{ kind: string; content?: Buffer; target?: string }> {
  const fs = fss.find((x) => x.role === f.fs)!;
  const path = f.fs === 'boot' ? f.path.replace(/^\/boot/, '') || '/' : f.path;
  if (fs.type === 'vfat') {
    const r = await execa('mtype', ['-i', `${disk}@@${fs.offset}`, `::${path}`], {
      encoding: 'buffer',
      reject: false,
      stripFinalNewline: false,
      env: { MTOOLS_SKIP_CHECK: '1' },
    });
    return r.exitCode === 0 ? { kind: 'file', content: Buffer.from(r.stdout) } : { kind: 'none' };
  }
  const dev = `${disk}?offset=${fs.offset}`;
  const st = await execa('debugfs', ['-R', `stat "${path}"`, dev], { reject: false });
  if (/File not found/.test(st.stderr) || st.exitCode !== 0) return { kind: 'none' };
  const type = /Type: (\w+)/.exec(st.stdout)?.[1];
  if (type === 'symlink') return { kind: 'symlink', target: /Fast link dest: "([^"]*)"/.exec(st.stdout)?.[1] };
  if (type === 'directory') return { kind: 'dir' };
  const cat = await execa('debugfs', ['-R', `cat "${path}"`, dev], {
    encoding: 'buffer',
    reject: false,
    stripFinalNewline: false,
  });
  return { kind: 'file', content: Buffer.from(cat.stdout) };
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Every partition, file system and guest file of the plan, found as planned on the disk the conversion wrote. */
async function expectDiskAsPlanned(disk: string, plan: ConversionPlan): Promise<void> {
  if (plan.layout) {
    const table = (
      JSON.parse((await execa('sfdisk', ['--json', disk])).stdout) as {
        partitiontable: { id: string; partitions: { start: number; size: number; uuid?: string; type: string }[] };
      }
    ).partitiontable;
    expect(table.partitions.map((p) => ({ start: p.start * 512, size: p.size * 512 }))).toEqual(
      plan.layout.partitions.map((p) => ({ start: p.start, size: p.size })),
    );
    if (plan.layout.table === 'gpt') {
      expect(table.id.toLowerCase()).toBe(plan.layout.diskGuid.toLowerCase());
      expect(table.partitions.map((p) => p.uuid!.toLowerCase())).toEqual(
        plan.layout.partitions.map((p) => p.guid.toLowerCase()),
      );
      expect(table.partitions.map((p) => p.type.toLowerCase())).toEqual(
        plan.layout.partitions.map((p) => p.gptType.toLowerCase()),
      );
    }
  }
  for (const fs of plan.filesystems) {
    if (fs.type === 'ext4')
      expect(await ext4At(disk, fs.offset), `${fs.role} file system`).toEqual({
        uuid: fs.uuid,
        size: fs.size,
        inodes: fs.inodes,
      });
    else expect(await fatAt(disk, fs.offset), `${fs.role} file system`).toEqual({ uuid: fs.uuid, size: fs.size });
  }
  for (const f of plan.guestFiles) {
    const got = await readGuestFile(disk, plan.filesystems, f);
    const what = `${f.kind} ${f.fs}:${f.path}`;
    switch (f.kind) {
      case 'file':
        expect(got.kind, what).toBe('file');
        if (f.content !== undefined) expect(got.content!.toString('utf8'), what).toBe(f.content);
        else if (f.from && !f.from.startsWith('work:'))
          expect(sha(got.content!), what).toBe(sha(await readFile(f.from)));
        else expect(got.content!.length, what).toBeGreaterThan(0);
        break;
      case 'dir':
        expect(got.kind, what).toBe('dir');
        break;
      case 'symlink':
        expect(got, what).toEqual({ kind: 'symlink', target: f.content });
        break;
      case 'remove':
        if (!f.filter) expect(got.kind, what).toBe('none');
        break;
      case 'copy':
        expect(got.kind, what).toBe('dir');
        break;
      case 'edit':
        if (f.path === '/etc/shadow') expect(got.content!.toString('utf8'), what).toMatch(/^root:\$6\$/m);
        break;
    }
  }
}

describe('the plan is what a conversion builds', () => {
  it('--init img2vm with GRUB for BIOS and UEFI and a separate /boot: every partition, file system and guest file', async () => {
    const out = join(tmp, 'img2vm.raw');
    const { plan, built } = await planAndBuild(
      `oci-archive:${busybox}`,
      out,
      ['--init', 'img2vm', '--boot-partition', '128M', '--password', 'pw'],
      NO_DAEMON,
    );
    expect(plan.unknown).toEqual([]);
    expect(built).toEqual(plan);
    await expectDiskAsPlanned(out, built);
  });

  it('the distribution with systemd-boot on UEFI, from a cached guest build', async () => {
    const image = await debianFixture('img2vm-e2e-plan:bookworm');
    const out = join(tmp, 'distro.raw');
    // A first conversion makes the guest build the plan then finds in the builder's cache.
    const warm = await img2vm([
      image,
      '-o',
      join(tmp, 'warm.raw'),
      '--boot',
      'uefi',
      '--bootloader',
      'systemd-boot',
      '--seed',
      SEED,
    ]);
    expect(warm.exitCode, warm.all).toBe(0);
    const { plan, built } = await planAndBuild(
      image,
      out,
      ['--boot', 'uefi', '--bootloader', 'systemd-boot', '--hostname', 'planned'],
      {},
    );
    expect(plan.unknown).toEqual([]);
    expect(built).toEqual(plan);
    await expectDiskAsPlanned(out, built);
  });

  it('without the guest build in any cache the plan is an estimate and says so, and writes nothing', async () => {
    const base = await debianFixture('img2vm-e2e-plan:bookworm');
    // An image no builder has built yet: its own id.
    const image = `img2vm-e2e-plan-fresh:${Date.now()}`;
    await dockerBuild(image, `FROM ${base}\nLABEL org.img2vm.test.nonce="${image}"\n`);
    const out = join(tmp, 'estimated.raw');
    const r = await img2vm(['plan', image, '-o', out, '--builder', 'runc', '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const p = JSON.parse(r.stdout) as ConversionPlan;
    expect(p.unknown).toEqual(['kernel (estimated)', 'content (estimated)']);
    expect(p.guest).toMatchObject({ strategy: 'distro', cached: null, distribution: 'Debian GNU/Linux 12 (bookworm)' });
    expect(p.layout).not.toBeNull();
    await expect(open(out, 'r')).rejects.toThrow(/ENOENT/);
    await execa('docker', ['rmi', image], { reject: false });
  });
});
