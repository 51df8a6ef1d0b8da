// Module closure over modules.dep (dependencies first, built-ins skipped, - ≡ _), its hostile forms, and kernel versions from bzImage headers.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { kernelVersionOf, versionFromSetupHeader } from '../../src/kernel/bzimage.js';
import {
  canonicalModuleName,
  moduleClosure,
  ModulesError,
  parseModulesBuiltin,
  parseModulesDep,
  resolveModules,
} from '../../src/kernel/modules.js';
import { fakeBzImage } from '../../fixtures/debian-mirror/kernel.js';

// A slice of trixie's cloud kernel, as depmod writes it (a module's line lists its whole closure).
const DEP = `kernel/drivers/block/virtio_blk.ko.xz:
kernel/drivers/scsi/virtio_scsi.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/scsi_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/scsi_common.ko.xz:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/net/core/failover.ko.xz:
kernel/fs/fat/vfat.ko.xz: kernel/fs/fat/fat.ko.xz
kernel/fs/fat/fat.ko.xz:
kernel/fs/nls/nls-cp437.ko.zst:
kernel/drivers/virtio/virtio_mmio.ko.gz:
kernel/x/c.ko: kernel/x/a.ko kernel/x/b.ko
kernel/x/b.ko: kernel/x/a.ko
kernel/x/a.ko:
`;
const BUILTIN = 'kernel/fs/ext4/ext4.ko\nkernel/drivers/nvme/host/nvme.ko\nkernel/drivers/virtio/virtio_pci.ko\n';

const index = () => ({ dep: parseModulesDep(DEP), builtin: parseModulesBuiltin(BUILTIN) });

describe('moduleClosure', () => {
  it('orders dependencies before the modules that need them', () => {
    expect(moduleClosure(index(), ['virtio_scsi'])).toEqual(['scsi_common', 'scsi_mod', 'virtio_scsi']);
    expect(moduleClosure(index(), ['virtio_net'])).toEqual(['failover', 'net_failover', 'virtio_net']);
  });

  it('gives a valid order whatever order depmod listed a closure in', () => {
    const shuffled = DEP.replace(
      'kernel/x/c.ko: kernel/x/a.ko kernel/x/b.ko',
      'kernel/x/c.ko: kernel/x/b.ko kernel/x/a.ko',
    );
    for (const text of [DEP, shuffled])
      expect(moduleClosure({ dep: parseModulesDep(text), builtin: new Set() }, ['c'])).toEqual(['a', 'b', 'c']);
  });

  it('lists each module once, skips built-ins and treats - and _ alike', () => {
    expect(
      moduleClosure(index(), ['vfat', 'fat', 'ext4', 'virtio-blk', 'nvme', 'virtio_pci', 'scsi_mod', 'virtio-scsi']),
    ).toEqual(['fat', 'vfat', 'virtio_blk', 'scsi_common', 'scsi_mod', 'virtio_scsi']);
    expect(moduleClosure(index(), ['nls_cp437', 'virtio_mmio.ko'])).toEqual(['nls_cp437', 'virtio_mmio']);
    expect(canonicalModuleName('nls-cp437.ko.zst')).toBe('nls_cp437');
  });

  it('says which module is missing, or skips it when asked', () => {
    expect(() => moduleClosure(index(), ['virtio_blk', 'e1000'])).toThrow(/no module "e1000"/);
    expect(moduleClosure(index(), ['e1000', 'vfat'], { missing: 'skip' })).toEqual(['fat', 'vfat']);
  });

  it('refuses dependency cycles and dangling dependencies', () => {
    expect(() =>
      moduleClosure({ dep: parseModulesDep('a.ko: b.ko\nb.ko: a.ko\n'), builtin: new Set() }, ['a']),
    ).toThrow(/cycle: a → b → a/);
    expect(() => moduleClosure({ dep: parseModulesDep('a.ko: gone.ko\n'), builtin: new Set() }, ['a'])).toThrow(
      /"gone" that has no line of its own/,
    );
  });
});

describe('parseModulesDep', () => {
  it('takes the absolute paths old depmods wrote', () => {
    const dep = parseModulesDep(
      '/lib/modules/4.9.0/kernel/a.ko: /lib/modules/4.9.0/kernel/b.ko\n/lib/modules/4.9.0/kernel/b.ko:\n',
      '4.9.0',
    );
    expect(dep.get('a')).toEqual({ path: 'kernel/a.ko', deps: ['kernel/b.ko'] });
  });

  it.each([
    '../../../etc/passwd.ko:',
    'kernel/a.ko: /etc/shadow.ko',
    '/lib/modules/other/kernel/a.ko:',
    'kernel/a.txt:',
    'kernel//a.ko:',
    'no colon here',
  ])('refuses "%s"', (line) => {
    expect(() => parseModulesDep(`${line}\n`, '6.1.0')).toThrow(ModulesError);
  });
});

describe('resolveModules', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'img2vm-mods-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("gives absolute paths and each module's compression", async () => {
    await writeFile(join(dir, 'modules.dep'), DEP);
    await writeFile(join(dir, 'modules.builtin'), BUILTIN);
    for (const line of DEP.split('\n').filter(Boolean)) {
      const p = join(dir, line.slice(0, line.indexOf(':')));
      await mkdir(join(p, '..'), { recursive: true });
      await writeFile(p, 'ko');
    }
    const got = resolveModules({ version: '6.12', modulesDir: dir }, ['vfat', 'nls-cp437', 'virtio_mmio', 'a', 'ext4']);
    expect(got).toEqual([
      { name: 'fat', path: join(dir, 'kernel/fs/fat/fat.ko.xz'), compressed: 'xz' },
      { name: 'vfat', path: join(dir, 'kernel/fs/fat/vfat.ko.xz'), compressed: 'xz' },
      { name: 'nls_cp437', path: join(dir, 'kernel/fs/nls/nls-cp437.ko.zst'), compressed: 'zstd' },
      { name: 'virtio_mmio', path: join(dir, 'kernel/drivers/virtio/virtio_mmio.ko.gz'), compressed: 'gzip' },
      { name: 'a', path: join(dir, 'kernel/x/a.ko'), compressed: null },
    ]);
  });

  it('is an Img2vmError naming the kernel when a module is missing or modules.dep is', async () => {
    expect(() => resolveModules({ version: '6.12', modulesDir: dir, origin: 'test' }, ['vfat'])).toThrow(
      expect.objectContaining({
        kind: 'badImage',
        message: expect.stringMatching(/kernel 6\.12 \(test\): .*modules\.dep is missing/),
      }),
    );
    await writeFile(join(dir, 'modules.dep'), 'kernel/a.ko:\n');
    expect(() => resolveModules({ version: '6.12', modulesDir: dir }, ['a'])).toThrow(
      expect.objectContaining({
        kind: 'badImage',
        message: expect.stringMatching(/lists kernel\/a\.ko, which is not in/),
      }),
    );
  });

  it('needs nothing for a kernel without modules', () => {
    expect(resolveModules({ version: '6.12' }, ['virtio_blk'])).toEqual([]);
  });
});

describe('kernelVersionOf', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'img2vm-bz-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the release from the bzImage setup header', async () => {
    const p = join(dir, 'vmlinuz');
    await writeFile(p, fakeBzImage('6.12.118+deb13-cloud-amd64'));
    expect(await kernelVersionOf(p)).toBe('6.12.118+deb13-cloud-amd64');
  });

  it('finds the banner of an uncompressed kernel, also across read chunks', async () => {
    const p = join(dir, 'vmlinux');
    const b = Buffer.alloc((4 << 20) + 100);
    b.write('\x7fELF', 0, 'latin1');
    b.write('Linux version 6.6.71-linuxkit (root@buildkitsandbox) (gcc) #1 SMP\0', (4 << 20) - 20, 'latin1');
    await writeFile(p, b);
    expect(await kernelVersionOf(p)).toBe('6.6.71-linuxkit');
  });

  it('refuses files that are not kernels', async () => {
    const p = join(dir, 'x');
    await writeFile(p, 'hello');
    await expect(kernelVersionOf(p)).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/not a Linux kernel image/),
    });
    await expect(kernelVersionOf(join(dir, 'missing'))).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/ENOENT/),
    });
  });

  it('ignores headers that point outside the file or at junk', () => {
    const b = fakeBzImage('6.1.0');
    b.writeUInt16LE(0xfff0, 0x20e);
    expect(versionFromSetupHeader(b)).toBeUndefined();
    const c = fakeBzImage('not a version');
    expect(versionFromSetupHeader(c)).toBeUndefined();
    const d = fakeBzImage('6.1.0');
    d.writeUInt16LE(0x0100, 0x206);
    expect(versionFromSetupHeader(d)).toBeUndefined();
  });
});
