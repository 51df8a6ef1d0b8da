// --kernel SRC spellings: the Debian archive by suite, .deb and vmlinuz paths, and image references of every transport.
import { describe, expect, it } from 'vitest';
import { DEFAULT_SUITE, parseKernelSource } from '../../src/kernel/spec.js';

const cwd = '/work/here';

describe('parseKernelSource', () => {
  it("defaults to Debian stable's cloud kernel", () => {
    expect(DEFAULT_SUITE).toBe('trixie');
    expect(parseKernelSource(undefined, { cwd })).toEqual({ kind: 'debian-archive', suite: 'trixie' });
    expect(parseKernelSource('', { cwd })).toEqual({ kind: 'debian-archive', suite: 'trixie' });
    expect(parseKernelSource('debian-archive', { cwd })).toEqual({ kind: 'debian-archive', suite: 'trixie' });
  });

  it.each(['bookworm', 'trixie', 'sid', 'stable', 'bookworm-backports'])('takes debian-archive:%s', (suite) => {
    expect(parseKernelSource(`debian-archive:${suite}`, { cwd })).toEqual({ kind: 'debian-archive', suite });
  });

  it.each(['', 'Trixie', '../x', 'trixie/updates', 'a b', 'trixie:x'])('refuses the suite "%s"', (suite) => {
    expect(() => parseKernelSource(`debian-archive:${suite}`, { cwd })).toThrow(
      expect.objectContaining({ kind: 'usage' }),
    );
  });

  it('takes paths to .debs and kernel files, relative to cwd', () => {
    expect(parseKernelSource('./linux-image.deb', { cwd })).toEqual({
      kind: 'deb',
      path: '/work/here/linux-image.deb',
    });
    expect(parseKernelSource('linux-image-6.12_amd64.deb', { cwd })).toEqual({
      kind: 'deb',
      path: '/work/here/linux-image-6.12_amd64.deb',
    });
    expect(parseKernelSource('/boot/vmlinuz-6.1.0', { cwd })).toEqual({ kind: 'vmlinuz', path: '/boot/vmlinuz-6.1.0' });
    expect(parseKernelSource('../k/bzImage', { cwd, modulesDir: 'mods/lib/modules/6.1.0' })).toEqual({
      kind: 'vmlinuz',
      path: '/work/k/bzImage',
      modulesDir: '/work/here/mods/lib/modules/6.1.0',
    });
  });

  it('takes a bare word as an image unless the caller knows it is a file', () => {
    expect(parseKernelSource('vmlinuz', { cwd })).toEqual({ kind: 'image', ref: 'vmlinuz' });
    expect(parseKernelSource('vmlinuz', { cwd, isFile: (p) => p === 'vmlinuz' })).toEqual({
      kind: 'vmlinuz',
      path: '/work/here/vmlinuz',
    });
  });

  it.each([
    'docker://linuxkit/kernel:6.6.71',
    'docker-daemon:linuxkit/kernel:6.6.71',
    'oci:/srv/layouts/kernel:6.6',
    'oci-archive:kernel.tar:6.6',
    'docker-archive:kernel.tar',
    'linuxkit/kernel:6.6.71',
    'localhost:5000/kernels/debian:13',
    'ghcr.io/me/kernel@sha256:' + 'a'.repeat(64),
  ])('takes the image %s', (ref) => {
    expect(parseKernelSource(ref, { cwd })).toEqual({ kind: 'image', ref });
  });

  it('refuses invalid image references', () => {
    expect(() => parseKernelSource('docker://bad..name', { cwd })).toThrow(expect.objectContaining({ kind: 'usage' }));
    expect(() => parseKernelSource('two words', { cwd })).toThrow(expect.objectContaining({ kind: 'usage' }));
  });

  it('allows --kernel-modules only with a kernel file', () => {
    for (const src of [undefined, 'debian-archive:bookworm', './k.deb', 'docker://linuxkit/kernel:6.6']) {
      expect(() => parseKernelSource(src, { cwd, modulesDir: '/m' })).toThrow(
        expect.objectContaining({
          kind: 'usage',
          message: expect.stringMatching(/--kernel-modules only goes with a kernel file/),
        }),
      );
    }
    expect(() => parseKernelSource('vmlinuz', { cwd, modulesDir: '/m' })).toThrow(
      expect.objectContaining({ kind: 'usage', hint: expect.stringMatching(/--kernel \.\/vmlinuz/) }),
    );
  });
});
