// run/test never let a disk name other host files: the format comes from the name, never from probing (disks made by qemu-img: disk.tools.test.ts).
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scope } from '../../src/core/scope.js';
import {
  diskFormat,
  formatFromName,
  infoProblem,
  qcow2HeaderProblem,
  qemuImgInfoArgs,
  vmdkHeaderProblem,
} from '../../src/vm/disk.js';
import { prepareMachine, type MachineOptions } from '../../src/vm/machine.js';

let dir: string;
// The suite's script sets IMG2VM_TCG_THREAD for its boots: these tests decide it themselves.
const tcgThread = process.env.IMG2VM_TCG_THREAD;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'img2vm-disk-'));
  await writeFile(join(dir, 'secret.raw'), 'host secret\n'.repeat(1000));
  process.env.IMG2VM_ACCEL = 'tcg';
  delete process.env.IMG2VM_TCG_THREAD;
});
afterAll(async () => {
  delete process.env.IMG2VM_ACCEL;
  if (tcgThread !== undefined) process.env.IMG2VM_TCG_THREAD = tcgThread;
  await rm(dir, { recursive: true, force: true });
});

describe('formatFromName', () => {
  it('maps the extensions img2vm writes, and nothing else', () => {
    expect(['a.raw', 'a.IMG', 'a.ext4', 'a.qcow2', 'a.vmdk', 'a.vhdx', 'a.vhd', 'a.vdi'].map(formatFromName)).toEqual([
      'raw',
      'raw',
      'raw',
      'qcow2',
      'vmdk',
      'vhdx',
      'vpc',
      'vdi',
    ]);
    expect(['disk', 'a.iso', 'a.qcow', '.raw/x'].map(formatFromName)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('qemu-img is always told the format', () => {
    expect(qemuImgInfoArgs('/d/x.qcow2', 'qcow2')).toEqual([
      'info',
      '-f',
      'qcow2',
      '-U',
      '--output=json',
      '/d/x.qcow2',
    ]);
  });
});

describe('qcow2 and vmdk disks that name other files are refused', () => {
  it('a .qcow2 that is not qcow2, and a VMDK descriptor listing extents', async () => {
    const fake = join(dir, 'fake.qcow2');
    await writeFile(fake, Buffer.alloc(1024 * 1024));
    await expect(diskFormat(fake)).rejects.toMatchObject({
      message: `refusing to boot ${fake} as qcow2: it is not a qcow2 file (no qcow2 header)`,
    });
    const desc = join(dir, 'desc.vmdk');
    await writeFile(
      desc,
      `# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "${join(dir, 'secret.raw')}" 0\n`,
    );
    await expect(diskFormat(desc)).rejects.toMatchObject({
      message: `refusing to boot ${desc} as vmdk: it is a VMDK descriptor that names other files as its extents`,
    });
  });

  it('a disk without an extension img2vm writes', async () => {
    const disk = join(dir, 'noext');
    await writeFile(disk, '');
    await expect(diskFormat(disk)).rejects.toMatchObject({
      kind: 'usage',
      message: `cannot tell the format of ${disk} from its name`,
    });
  });
});

describe('header and info checks', () => {
  it('qcow2 headers: v2 and v3 clean, backing, the data-file bit, not qcow2', () => {
    const h = Buffer.alloc(112);
    h.writeUInt32BE(0x514649fb, 0);
    h.writeUInt32BE(3, 4);
    h.writeUInt32BE(112, 100);
    expect(qcow2HeaderProblem(h)).toBeUndefined();
    const v2 = Buffer.from(h);
    v2.writeUInt32BE(2, 4);
    expect(qcow2HeaderProblem(v2.subarray(0, 72))).toBeUndefined();
    const backing = Buffer.from(h);
    backing.writeBigUInt64BE(512n, 8);
    expect(qcow2HeaderProblem(backing)).toBe('it has a backing file');
    const data = Buffer.from(h);
    data.writeBigUInt64BE(4n, 72);
    expect(qcow2HeaderProblem(data)).toBe('it keeps its data in an external data file');
    expect(qcow2HeaderProblem(Buffer.from('QFI'))).toBe('it is not a qcow2 file (no qcow2 header)');
  });

  it('vmdk: a sparse header passes, a descriptor does not', () => {
    expect(vmdkHeaderProblem(Buffer.from('KDMV\x01\x00\x00\x00', 'latin1'))).toBeUndefined();
    expect(vmdkHeaderProblem(Buffer.from('  # Disk DescriptorFile\n'))).toMatch(/descriptor/);
  });

  it('qemu-img info: backing, data file, extents elsewhere, another format', () => {
    expect(infoProblem({ format: 'qcow2' }, '/d/a.qcow2', 'qcow2')).toBeUndefined();
    expect(infoProblem({ format: 'raw' }, '/d/a.qcow2', 'qcow2')).toBe('qemu-img reads it as raw, not qcow2');
    expect(infoProblem({ format: 'qcow2', 'backing-filename': '/etc/shadow' }, '/d/a.qcow2', 'qcow2')).toBe(
      'it has a backing file (/etc/shadow)',
    );
    expect(
      infoProblem({ format: 'qcow2', 'format-specific': { data: { 'data-file': '/x' } } }, '/d/a.qcow2', 'qcow2'),
    ).toMatch(/external data file/);
    expect(
      infoProblem(
        { format: 'vmdk', 'format-specific': { data: { extents: [{ filename: '/d/a.vmdk' }] } } },
        '/d/a.vmdk',
        'vmdk',
      ),
    ).toBeUndefined();
    expect(
      infoProblem(
        { format: 'vmdk', 'format-specific': { data: { extents: [{ filename: '/etc/shadow' }] } } },
        '/d/a.vmdk',
        'vmdk',
      ),
    ).toBe('it names other files as extents (/etc/shadow)');
  });
});

describe('a Firecracker config names only the files beside it', () => {
  const opts = (disk: string): MachineOptions => ({
    disk,
    memMiB: 256,
    cpus: 1,
    snapshot: true,
    publish: [],
    console: 'pipe',
  });
  async function config(name: string, kernel: string, drive: string): Promise<string> {
    const d = join(dir, name);
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'vm.vmlinux'), 'k');
    await writeFile(join(d, 'vm.ext4'), Buffer.alloc(4096));
    const file = join(d, 'vm.firecracker.json');
    await writeFile(
      file,
      JSON.stringify({
        'boot-source': { kernel_image_path: kernel, boot_args: 'console=ttyS0' },
        drives: [{ drive_id: 'rootfs', path_on_host: drive, is_root_device: true }],
      }),
    );
    return file;
  }

  it('refuses a drive or kernel elsewhere on the host, or a link', async () => {
    const scope = new Scope();
    try {
      const far = await config('far', './vm.vmlinux', join(dir, 'secret.raw'));
      await expect(prepareMachine(opts(far), scope)).rejects.toMatchObject({
        message: expect.stringMatching(
          /^refusing vm\.firecracker\.json: its root drive .*secret\.raw is not beside the config$/,
        ),
      });
      const up = await config('up', '../secret.raw', './vm.ext4');
      await expect(prepareMachine(opts(up), scope)).rejects.toMatchObject({
        message: expect.stringMatching(/its kernel .*secret\.raw is not beside the config/),
      });
      const link = await config('link', './vm.vmlinux', './shadow.ext4');
      await symlink(join(dir, 'secret.raw'), join(dir, 'link', 'shadow.ext4'));
      await expect(prepareMachine(opts(link), scope)).rejects.toMatchObject({
        message: expect.stringMatching(/its root drive .*shadow\.ext4 is not a regular file/),
      });
      const ok = await config('ok', './vm.vmlinux', './vm.ext4');
      const m = await prepareMachine(opts(ok), scope);
      expect(m.firmware).toBe('direct');
      expect(m.argv.slice(m.argv.indexOf('-accel'), m.argv.indexOf('-accel') + 2)).toEqual(['-accel', 'tcg']);
    } finally {
      await scope.close();
    }
  });

  it('IMG2VM_TCG_THREAD=single puts every vCPU on one thread and says so; another value is refused', async () => {
    const scope = new Scope();
    try {
      const ok = await config('single', './vm.vmlinux', './vm.ext4');
      process.env.IMG2VM_TCG_THREAD = 'single';
      const m = await prepareMachine(opts(ok), scope);
      expect(m.argv[m.argv.indexOf('-accel') + 1]).toBe('tcg,thread=single');
      expect(m.accelReason).toBe('IMG2VM_ACCEL; vCPUs take turns on one thread (IMG2VM_TCG_THREAD)');
      process.env.IMG2VM_TCG_THREAD = 'one';
      await expect(prepareMachine(opts(ok), scope)).rejects.toMatchObject({
        kind: 'usage',
        message: 'invalid IMG2VM_TCG_THREAD "one"',
      });
    } finally {
      delete process.env.IMG2VM_TCG_THREAD;
      await scope.close();
    }
  });
});
