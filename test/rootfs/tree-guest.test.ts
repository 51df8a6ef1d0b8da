// The kernel a bootable tree brings, as the tree phase of planning finds it in /boot.
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { findKernelInTree } from '../../src/rootfs/tree-guest.js';
import { binPath } from '../../src/rootfs/tree-path.js';

const tree = (): RootTree => new RootTree({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });

describe('findKernelInTree', () => {
  it('takes the newest kernel by version, and the /vmlinuz links when they point at it', () => {
    const t = tree();
    for (const v of ['6.1.0-9-cloud-amd64', '6.1.0-10-cloud-amd64']) {
      t.writeFile(binPath(`/boot/vmlinuz-${v}`), '', { mode: 0o644 });
      t.writeFile(binPath(`/boot/initrd.img-${v}`), '', { mode: 0o644 });
    }
    expect(findKernelInTree(t)).toEqual({
      version: '6.1.0-10-cloud-amd64',
      kernelPath: '/boot/vmlinuz-6.1.0-10-cloud-amd64',
      initrdPath: '/boot/initrd.img-6.1.0-10-cloud-amd64',
    });
    t.symlink(binPath('/vmlinuz'), binPath('boot/vmlinuz-6.1.0-9-cloud-amd64'));
    expect(findKernelInTree(t)).toMatchObject({ kernelPath: '/boot/vmlinuz-6.1.0-10-cloud-amd64' });
    t.symlink(binPath('/vmlinuz'), binPath('boot/vmlinuz-6.1.0-10-cloud-amd64'));
    t.symlink(binPath('/initrd.img'), binPath('boot/initrd.img-6.1.0-10-cloud-amd64'));
    expect(findKernelInTree(t)).toMatchObject({ kernelPath: '/vmlinuz', initrdPath: '/initrd.img' });
  });

  it('finds nothing without /boot, or with a /boot that leads out of the tree', () => {
    const t = tree();
    expect(findKernelInTree(t)).toBeUndefined();
    // A symlink to the host's /boot is resolved inside the tree, where there is none.
    t.symlink(binPath('/boot'), binPath('/../../../usr/boot'));
    expect(findKernelInTree(t)).toBeUndefined();
  });
});
