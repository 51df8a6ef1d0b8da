// run/test against disks qemu-img makes: a raw disk posing as qcow2 is booted as raw; backing and data files are refused.
import { execa } from 'execa';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scope } from '../../src/core/scope.js';
import { diskFormat } from '../../src/vm/disk.js';
import { prepareMachine } from '../../src/vm/machine.js';

let dir: string;
const qemuImg = async (...args: string[]) => {
  const r = await execa('qemu-img', args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

/**
 * The attack: a guest rewrites the first (4 KiB) sector of its raw disk into a qcow2 header whose backing file is a
 * host file. A host that probes the format would hand that file to the guest on the next boot.
 */
async function poisonedRaw(name: string, backing: string): Promise<string> {
  const header = join(dir, `${name}.header.qcow2`);
  await qemuImg('create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'raw', header, '1M');
  const disk = join(dir, name);
  await writeFile(disk, Buffer.alloc(4 * 1024 * 1024));
  const src = await open(header, 'r');
  // One 4 KiB sector: the header, its extensions and the backing file's name.
  const first = Buffer.alloc(4096);
  await src.read(first, 0, 4096, 0);
  await src.close();
  const dst = await open(disk, 'r+');
  await dst.write(first, 0, 4096, 0);
  await dst.close();
  return disk;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'img2vm-disk-'));
  await writeFile(join(dir, 'secret.raw'), 'host secret\n'.repeat(1000));
  process.env.IMG2VM_ACCEL = 'tcg';
});
afterAll(async () => {
  delete process.env.IMG2VM_ACCEL;
  await rm(dir, { recursive: true, force: true });
});

describe('the raw disk whose first sector a guest made a qcow2 header naming a host file', () => {
  it('is a qcow2 with a backing file to a probing reader (the attack is real)', async () => {
    const disk = await poisonedRaw('attack.raw', join(dir, 'secret.raw'));
    const probed = JSON.parse(await qemuImg('info', '-U', '--output=json', disk)) as {
      format: string;
      'backing-filename'?: string;
    };
    expect(probed.format).toBe('qcow2');
    expect(probed['backing-filename']).toBe(join(dir, 'secret.raw'));
  });

  it('is booted as raw: QEMU gets format=raw and never sees the header as one', async () => {
    const disk = await poisonedRaw('attack2.raw', join(dir, 'secret.raw'));
    expect(await diskFormat(disk)).toBe('raw');
    const scope = new Scope();
    try {
      const m = await prepareMachine(
        { disk, firmware: 'bios', memMiB: 256, cpus: 1, snapshot: true, publish: [], console: 'pipe' },
        scope,
      );
      expect(m.format).toBe('raw');
      expect(m.argv[m.argv.indexOf('-drive') + 1]).toBe(`file=${disk},if=virtio,format=raw`);
      expect(m.argv.join(' ')).not.toContain('secret');
    } finally {
      await scope.close();
    }
  });
});

describe('qcow2 and vmdk disks that name other files are refused', () => {
  it('a qcow2 with a backing file', async () => {
    const disk = join(dir, 'overlay.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', join(dir, 'secret.raw'), '-F', 'raw', disk);
    await expect(diskFormat(disk)).rejects.toMatchObject({
      kind: 'usage',
      message: `refusing to boot ${disk} as qcow2: it has a backing file`,
    });
  });

  it('a qcow2 with an external data file', async () => {
    const disk = join(dir, 'datafile.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${join(dir, 'data.raw')}`, disk, '1M');
    await expect(diskFormat(disk)).rejects.toMatchObject({
      message: `refusing to boot ${disk} as qcow2: it keeps its data in an external data file`,
    });
  });

  it('self-contained disks of every format img2vm writes pass', async () => {
    for (const [ext, fmt, opts] of [
      ['qcow2', 'qcow2', []],
      ['vmdk', 'vmdk', []],
      ['vmdk', 'vmdk', ['-o', 'subformat=streamOptimized']],
      ['vhdx', 'vhdx', []],
      ['vhd', 'vpc', []],
      ['vdi', 'vdi', []],
    ] as const) {
      const disk = join(dir, `ok-${opts.length}.${ext}`);
      await qemuImg('create', '-q', '-f', fmt, ...opts, disk, '4M');
      expect(await diskFormat(disk)).toBe(fmt);
    }
  });
});
