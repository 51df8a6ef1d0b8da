import { describe, expect, it } from 'vitest';
import { resolveFormat } from '../../src/output/index.js';
import { qemuImgConvertArgs } from '../../src/output/qemu-img.js';
import { minimumFsSize, defaultFsSize } from '../../src/disk/sizing.js';

describe('output format', () => {
  it('comes from the extension or --format', () => {
    expect(resolveFormat('a.qcow2').id).toBe('qcow2');
    expect(resolveFormat('a.IMG').id).toBe('raw');
    expect(resolveFormat('a.raw').id).toBe('raw');
    expect(resolveFormat('a.bin', 'qcow2').id).toBe('qcow2');
    expect(['a.vmdk', 'a.vhdx', 'a.vhd', 'a.vdi'].map((f) => resolveFormat(f).id)).toEqual([
      'vmdk',
      'vhdx',
      'vhd',
      'vdi',
    ]);
  });
  it('lists the choices when it cannot tell', () => {
    expect(() => resolveFormat('a.xyz')).toThrow(/cannot tell the output format/);
    expect(() => resolveFormat('disk')).toThrow(/no extension/);
    expect(() => resolveFormat('a.img', 'nope')).toThrow(/unknown --format/);
  });
  it('converts with the exact qemu-img argv', () => {
    expect(qemuImgConvertArgs('/w/disk.raw', '/o/.d.tmp', 'qcow2', { compress: true })).toEqual([
      'convert',
      '-f',
      'raw',
      '-O',
      'qcow2',
      '-c',
      '/w/disk.raw',
      '/o/.d.tmp',
    ]);
  });
});

describe('ext4 sizes', () => {
  it('sizes: default has headroom above the minimum', () => {
    const s = { blocks4k: 100_000, entries: 20_000 };
    expect(minimumFsSize(s)).toBeGreaterThan(100_000 * 4096);
    expect(defaultFsSize(s) - minimumFsSize(s)).toBeGreaterThanOrEqual(256 * 1048576);
  });
});
