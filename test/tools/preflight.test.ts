import { describe, expect, it, vi } from 'vitest';

vi.mock('node:fs', async (orig) => {
  const fs = await orig<typeof import('node:fs')>();
  return {
    ...fs,
    accessSync: (p: string, mode?: number) => {
      if (/\/(mke2fs|qemu-img|grub-mkimage)$/.test(p)) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return fs.accessSync(p, mode);
    },
  };
});

const { preflight, requireTool } = await import('../../src/tools/index.js');

describe('host tools', () => {
  it('names every missing tool and the Debian packages to install', () => {
    expect(() => preflight(['mke2fs', 'qemu-img', 'grub-mkimage', 'e2fsck'])).toThrow(
      /host tools missing: mke2fs, qemu-img, grub-mkimage/,
    );
    expect(() => preflight(['mke2fs', 'qemu-img'])).toThrow(
      expect.objectContaining({
        kind: 'toolMissing',
        exitCode: 5,
        hint: 'install: apt-get install e2fsprogs qemu-utils',
      }),
    );
  });
  it('requireTool says which package', () => {
    expect(() => requireTool('grub-mkimage')).toThrow(/host tool "grub-mkimage" is missing/);
  });
});
