import { readFileSync, existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { patchBootImage, patchCoreImage, grubMkimageArgs, earlyConfig, GRUB_PC_DIR } from '../../src/boot/grub-bios.js';
import { kernelCmdline, renderGrubCfg } from '../../src/boot/grub-config.js';

describe('GRUB BIOS patching', () => {
  const boot = Buffer.alloc(512, 0xaa);
  it('points boot.img at the core image and NOPs the drive check, leaving the partition table alone', () => {
    const b = patchBootImage(boot, 2048);
    expect(b.length).toBe(0x1b8);
    expect(b.readBigUInt64LE(0x5c)).toBe(2048n);
    expect([b[0x66], b[0x67]]).toEqual([0x90, 0x90]);
    expect(b[0x10]).toBe(0xaa);
  });
  it('fills the core image blocklist with the sectors after its first', () => {
    const core = Buffer.alloc(512 * 60 + 100);
    const c = patchCoreImage(core, 34);
    expect(c.readBigUInt64LE(500)).toBe(35n);
    expect(c.readUInt16LE(508)).toBe(60);
  });
  it('works on the real boot.img (jump at 0x66 becomes NOPs)', () => {
    expect(
      existsSync(`${GRUB_PC_DIR}/boot.img`),
      `${GRUB_PC_DIR}/boot.img is missing: install grub-pc-bin (scripts/install-deps.sh)`,
    ).toBe(true);
    const real = readFileSync(`${GRUB_PC_DIR}/boot.img`);
    expect(real[0x66]).not.toBe(0x90);
    expect(patchBootImage(real, 1).readBigUInt64LE(0x5c)).toBe(1n);
  });
  it('builds the exact grub-mkimage argv', () => {
    expect(
      grubMkimageArgs(
        '/w/core.img',
        '/w/early.cfg',
        '/boot/grub',
        'i386-pc',
        ['biosdisk', 'ext2'],
        '/usr/lib/grub/i386-pc',
      ),
    ).toEqual([
      '-O',
      'i386-pc',
      '-d',
      '/usr/lib/grub/i386-pc',
      '-o',
      '/w/core.img',
      '-c',
      '/w/early.cfg',
      '-p',
      '/boot/grub',
      'biosdisk',
      'ext2',
    ]);
    expect(earlyConfig('u-u-i-d', '/boot/grub')).toBe('search.fs_uuid u-u-i-d root\nset prefix=($root)/boot/grub\n');
  });
});

describe('grub.cfg', () => {
  it('boots the kernel with root by UUID on the serial console', () => {
    const cfg = renderGrubCfg({
      title: "Debian's",
      kernel: '/vmlinuz',
      initrd: '/initrd.img',
      cmdline: kernelCmdline('UUID=abc', 'quiet'),
    });
    expect(cfg).toContain("menuentry 'Debian'\\''s' {");
    expect(cfg).toContain('  linux /vmlinuz root=UUID=abc ro console=tty0 console=ttyS0,115200n8 quiet\n');
    expect(cfg).toContain('  initrd /initrd.img\n');
    expect(cfg).toContain('serial --unit=0 --speed=115200');
  });
});
