import { describe, expect, it } from 'vitest';
import { resolveFormat } from '../../src/output/index.js';
import { qemuImgConvertArgs } from '../../src/output/qemu-img.js';
import { mke2fsArgs, minimumFsSize, defaultFsSize, MKE2FS_CONF } from '../../src/disk/ext4.js';

describe('output format', () => {
  it('comes from the extension or --format', () => {
    expect(resolveFormat('a.qcow2').id).toBe('qcow2');
    expect(resolveFormat('a.IMG').id).toBe('raw');
    expect(resolveFormat('a.raw').id).toBe('raw');
    expect(resolveFormat('a.bin', 'qcow2').id).toBe('qcow2');
    expect(['a.vmdk', 'a.vhdx', 'a.vhd', 'a.vdi'].map((f) => resolveFormat(f).id)).toEqual(['vmdk', 'vhdx', 'vhd', 'vdi']);
  });
  it('lists the choices when it cannot tell', () => {
    expect(() => resolveFormat('a.xyz')).toThrow(/cannot tell the output format/);
    expect(() => resolveFormat('disk')).toThrow(/no extension/);
    expect(() => resolveFormat('a.img', 'nope')).toThrow(/unknown --format/);
  });
  it('converts with the exact qemu-img argv', () => {
    expect(qemuImgConvertArgs('/w/disk.raw', '/o/.d.tmp', 'qcow2', { compress: true })).toEqual(['convert', '-f', 'raw', '-O', 'qcow2', '-c', '/w/disk.raw', '/o/.d.tmp']);
  });
});

describe('ext4', () => {
  it('builds the exact mke2fs argv', () => {
    expect(
      mke2fsArgs({ image: '/w/d.raw', offset: 1048576, size: 1024 * 1048576, uuid: 'U', label: 'root', inodes: 65536, journalMiB: 32, source: '/w/rootfs', hashSeed: 'H' }),
    ).toEqual(['-q', '-F', '-t', 'ext4', '-b', '4096', '-N', '65536', '-J', 'size=32', '-m', '1', '-U', 'U', '-L', 'root',
      '-E', 'offset=1048576,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,hash_seed=H', '-d', '/w/rootfs', '/w/d.raw', '1048576k']);
  });
  it('leaves out features GRUB 2.06 cannot read', () => {
    expect(MKE2FS_CONF).not.toMatch(/orphan_file|metadata_csum_seed|large_dir/);
  });
  it('sizes: default has headroom above the minimum', () => {
    const s = { blocks4k: 100_000, entries: 20_000 };
    expect(minimumFsSize(s)).toBeGreaterThan(100_000 * 4096);
    expect(defaultFsSize(s) - minimumFsSize(s)).toBeGreaterThanOrEqual(256 * 1048576);
  });
});
