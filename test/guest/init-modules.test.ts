// The kernel modules img2vm's initramfs carries: dm-crypt's only when the root is encrypted, and refused clearly when missing.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initModuleFiles } from '../../src/guest/img2vm.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A modules directory as Debian's cloud kernel has it (6.12: xts, dm-* and AES-NI as modules, AES built in). */
function kernel(dep: string[], builtin: string[] = []): { modulesDir: string; version: string } {
  const dir = mkdtempSync(join(tmpdir(), 'img2vm-modules-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'modules.dep'), `${dep.join('\n')}\n`);
  writeFileSync(join(dir, 'modules.builtin'), builtin.map((b) => `${b}\n`).join(''));
  for (const line of dep) {
    const f = join(dir, line.split(':')[0]!);
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, 'module');
  }
  return { modulesDir: dir, version: '6.12.0-cloud-amd64' };
}

const DEBIAN = [
  'kernel/drivers/virtio/virtio_pci.ko.xz:',
  'kernel/drivers/block/virtio_blk.ko.xz:',
  'kernel/crypto/xts.ko.xz:',
  'kernel/crypto/cryptd.ko.xz:',
  'kernel/crypto/crypto_simd.ko.xz: kernel/crypto/cryptd.ko.xz',
  'kernel/lib/crypto/gf128mul.ko.xz:',
  'kernel/arch/x86/crypto/aesni-intel.ko.xz: kernel/lib/crypto/gf128mul.ko.xz kernel/crypto/crypto_simd.ko.xz kernel/crypto/cryptd.ko.xz',
  'kernel/drivers/md/dm-mod.ko.xz:',
  'kernel/drivers/md/dm-crypt.ko.xz: kernel/drivers/md/dm-mod.ko.xz',
];

describe("img2vm's initramfs modules", () => {
  it('has no device-mapper or crypto modules for a clear root', () => {
    expect(initModuleFiles(kernel(DEBIAN, ['kernel/fs/ext4/ext4.ko']), false).map((m) => m.name)).toEqual([
      'virtio_pci',
      'virtio_blk',
    ]);
  });

  it('adds dm-mod, dm-crypt and xts for a LUKS2 root, and AES-NI with what it needs, each after its dependencies', () => {
    const names = initModuleFiles(kernel(DEBIAN), true).map((m) => m.name);
    expect(names).toEqual([
      'virtio_pci',
      'virtio_blk',
      'dm_mod',
      'dm_crypt',
      'xts',
      'cryptd',
      'crypto_simd',
      'gf128mul',
      'aesni_intel',
    ]);
  });

  it('makes the CPU-specific AES modules and what only they need optional, nothing dm-crypt needs', () => {
    const optional = initModuleFiles(kernel(DEBIAN), true)
      .filter((m) => m.optional)
      .map((m) => m.name);
    expect(optional).toEqual(['cryptd', 'crypto_simd', 'gf128mul', 'aesni_intel']);
  });

  // arm64: aes_ce_blk needs aes_ce_cipher's symbols, and aes_ce_cipher refuses a CPU without the AES instructions
  // (ENODEV), so on such a CPU aes_ce_blk fails too (ENOENT): both must be optional or the boot ends there.
  it('on arm64, loads aes_ce_cipher before aes_ce_blk, both optional', () => {
    const arm64 = kernel([
      'kernel/drivers/block/virtio_blk.ko.xz:',
      'kernel/crypto/xts.ko.xz:',
      'kernel/arch/arm64/crypto/aes-ce-cipher.ko.xz:',
      'kernel/arch/arm64/crypto/aes-ce-blk.ko.xz: kernel/arch/arm64/crypto/aes-ce-cipher.ko.xz',
      'kernel/drivers/md/dm-mod.ko.xz:',
      'kernel/drivers/md/dm-crypt.ko.xz: kernel/drivers/md/dm-mod.ko.xz',
    ]);
    expect(initModuleFiles(arm64, true).map((m) => [m.name, m.optional ?? false])).toEqual([
      ['virtio_blk', false],
      ['dm_mod', false],
      ['dm_crypt', false],
      ['xts', false],
      ['aes_ce_cipher', true],
      ['aes_ce_blk', true],
    ]);
  });

  it('takes built-in ones as there, skips a missing CPU-specific AES, and refuses a kernel without dm-crypt', () => {
    const builtin = kernel(
      ['kernel/drivers/block/virtio_blk.ko:'],
      ['kernel/drivers/md/dm-mod.ko', 'kernel/drivers/md/dm-crypt.ko', 'kernel/crypto/xts.ko'],
    );
    expect(initModuleFiles(builtin, true).map((m) => m.name)).toEqual(['virtio_blk']);
    const without = kernel(['kernel/drivers/block/virtio_blk.ko:', 'kernel/crypto/xts.ko:']);
    expect(() => initModuleFiles(without, true)).toThrow(/has no module "dm_mod"/);
  });
});
