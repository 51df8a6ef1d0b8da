// Kernels from container images (linuxkit and /boot layouts, whiteouts honoured, hostile entries ignored) and from a kernel file with a modules directory.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getKernel, kernelCacheDir, resolveModules } from '../../src/kernel/index.js';
import { buildImage, imageBlobs, tarOf, writeLayout, type FileSpec } from '../../fixtures/hostile/images.js';
import { fakeBzImage } from '../../fixtures/debian-mirror/kernel.js';
import { listFiles, testEnv, type TestEnv } from './helpers.js';

let env: TestEnv;
beforeEach(async () => {
  env = await testEnv();
});
afterEach(async () => {
  await env.close();
});

async function layout(layers: Record<string, FileSpec>[]): Promise<string> {
  const img = buildImage({ layers: await Promise.all(layers.map((l) => tarOf(l))) });
  const dir = join(env.dir, `layout-${Math.random().toString(36).slice(2)}`);
  await writeLayout(dir, [{ top: img.manifest }], imageBlobs(img));
  return `oci:${dir}`;
}

const kernel = (ref: string) => getKernel({ kind: 'image', ref }, env.ctx, { cacheDir: env.cache });

describe('kernel images', () => {
  it("reads linuxkit's layout: /kernel and the modules in /kernel.tar, keeping its modules.dep", async () => {
    const v = '6.6.71-linuxkit';
    const modules = await tarOf({
      'lib/': { dir: true },
      [`lib/modules/${v}/`]: { dir: true },
      [`lib/modules/${v}/modules.dep`]: 'kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\nkernel/fs/fat/fat.ko:\n',
      [`lib/modules/${v}/modules.builtin`]: 'kernel/drivers/block/virtio_blk.ko\n',
      [`lib/modules/${v}/kernel/fs/fat/vfat.ko`]: 'vfat',
      [`lib/modules/${v}/kernel/fs/fat/fat.ko`]: 'fat',
      [`lib/modules/${v}/build`]: { symlink: `/usr/src/linux-headers-${v}` },
    });
    const ref = await layout([
      { kernel: fakeBzImage(v), 'kernel.tar': modules, 'System.map': 'x', 'kernel-dev.tar': 'headers' },
    ]);
    const b = await kernel(ref);
    expect(b.version).toBe(v);
    expect(b.origin).toBe(`image ${ref}`);
    expect(b.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b.config).toBeUndefined();
    expect((await readFile(b.vmlinuz)).equals(fakeBzImage(v))).toBe(true);
    expect(resolveModules(b, ['virtio_blk', 'vfat']).map((m) => m.name)).toEqual(['fat', 'vfat']);
    expect(await listFiles(b.modulesDir!)).toEqual([
      'kernel/fs/fat/fat.ko',
      'kernel/fs/fat/vfat.ko',
      'modules.builtin',
      'modules.dep',
    ]);
    // Again: from the cache, the same bundle.
    expect(await kernel(ref)).toEqual(b);
  });

  it('reads /boot/vmlinuz-* with /lib/modules across layers, honouring whiteouts', async () => {
    const ref = await layout([
      {
        'boot/vmlinuz-9.9.0': fakeBzImage('9.9.0'),
        'lib/modules/9.9.0/modules.dep': 'kernel/x.ko:\n',
        'lib/modules/9.9.0/kernel/x.ko': 'x',
        'boot/vmlinuz-6.1.0-9': fakeBzImage('6.1.0-9'),
        'boot/config-6.1.0-9': 'CONFIG_X=y\n',
        'usr/lib/modules/6.1.0-9/modules.dep': 'kernel/a.ko:\nkernel/b.ko:\n',
        'usr/lib/modules/6.1.0-9/kernel/a.ko': 'a',
        'usr/lib/modules/6.1.0-9/kernel/b.ko': 'b',
      },
      {
        // The newer kernel is removed; b.ko's directory is made opaque and refilled.
        'boot/.wh.vmlinuz-9.9.0': '',
        'lib/modules/.wh.9.9.0': '',
        'usr/lib/modules/6.1.0-9/kernel/.wh..wh..opq': '',
        'usr/lib/modules/6.1.0-9/kernel/c.ko': 'c',
        'usr/lib/modules/6.1.0-9/modules.dep': 'kernel/c.ko:\n',
      },
    ]);
    const b = await kernel(ref);
    expect(b.version).toBe('6.1.0-9');
    expect(await readFile(b.config!, 'utf8')).toBe('CONFIG_X=y\n');
    expect(await listFiles(b.modulesDir!)).toEqual(['kernel/c.ko', 'modules.dep']);
  });

  it('takes the newest kernel that has modules', async () => {
    const ref = await layout([
      {
        'boot/vmlinuz-6.1.0-10': fakeBzImage('6.1.0-10'),
        'boot/vmlinuz-6.1.0-9': fakeBzImage('6.1.0-9'),
        'boot/vmlinuz-6.1.0-11': fakeBzImage('6.1.0-11'),
        'lib/modules/6.1.0-9/modules.dep': '',
        'lib/modules/6.1.0-10/modules.dep': '',
      },
    ]);
    expect((await kernel(ref)).version).toBe('6.1.0-10');
  });

  it('ignores entries that leave the root, symlinks, and what a symlinked /lib hides', async () => {
    const ref = await layout([
      {
        'boot/vmlinuz-6.1.0': fakeBzImage('6.1.0'),
        'lib/modules/6.1.0/kernel/old.ko': 'hidden by the symlink above it',
        'lib/modules/6.1.0/modules.dep': 'kernel/old.ko:\n',
      },
      {
        lib: { symlink: 'usr/lib' },
        '../../../tmp/escape/lib/modules/6.1.0/kernel/evil.ko': 'x',
        'usr/lib/modules/6.1.0/../../../../etc/passwd': 'x',
        'usr/lib/modules/6.1.0/modules.dep': 'kernel/new.ko:\n',
        'usr/lib/modules/6.1.0/kernel/new.ko': 'new',
        'usr/lib/modules/6.1.0/kernel/link.ko': { symlink: '/etc/shadow' },
      },
    ]);
    const b = await kernel(ref);
    expect(await listFiles(b.modulesDir!)).toEqual(['kernel/new.ko', 'modules.dep']);
    expect(await listFiles(join(b.modulesDir!, '..', '..', '..'))).toEqual([
      'boot/vmlinuz-6.1.0',
      'kernel.json',
      'lib/modules/6.1.0/kernel/new.ko',
      'lib/modules/6.1.0/modules.dep',
    ]);
  });

  it('refuses an image without a kernel, or whose modules belong to another kernel, and caches nothing', async () => {
    await expect(kernel(await layout([{ 'etc/os-release': 'ID=debian\n' }]))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/holds no kernel/),
    });
    await expect(
      kernel(await layout([{ kernel: fakeBzImage('6.6.1'), 'lib/modules/6.6.2/modules.dep': '' }])),
    ).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/its kernel is 6\.6\.1 but its modules are for 6\.6\.2/),
    });
    await expect(kernel(await layout([{ kernel: 'not a kernel' }]))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/not a Linux kernel image/),
    });
    const kernels = kernelCacheDir({ cacheDir: env.cache });
    expect(await listFiles(join(kernels, 'trees'))).toEqual([]);
    expect(await listFiles(join(env.cache, 'tmp'))).toEqual([]);
  });
});

describe('a kernel file with a modules directory', () => {
  async function tree(v: string, mod = 'a'): Promise<{ vmlinuz: string; mods: string }> {
    const root = join(env.dir, `k-${Math.random().toString(36).slice(2)}`);
    const mods = join(root, 'lib', 'modules', v);
    await mkdir(join(mods, 'kernel'), { recursive: true });
    await writeFile(join(mods, 'modules.dep'), 'kernel/a.ko:\n');
    await writeFile(join(mods, 'kernel', 'a.ko'), mod);
    await writeFile(join(root, 'vmlinuz'), fakeBzImage(v));
    return { vmlinuz: join(root, 'vmlinuz'), mods };
  }

  it('uses the files where they are, with an id that follows their contents', async () => {
    const t = await tree('6.1.0');
    const b = await getKernel({ kind: 'vmlinuz', path: t.vmlinuz, modulesDir: t.mods }, env.ctx);
    expect(b).toEqual({
      version: '6.1.0',
      vmlinuz: t.vmlinuz,
      modulesDir: t.mods,
      origin: `kernel file ${t.vmlinuz} with modules from ${t.mods}`,
      id: expect.stringMatching(/^sha256:/),
    });
    // The lib/modules directory above works too.
    expect(await getKernel({ kind: 'vmlinuz', path: t.vmlinuz, modulesDir: join(t.mods, '..') }, env.ctx)).toEqual(b);
    const changed = await tree('6.1.0', 'b');
    expect(
      (await getKernel({ kind: 'vmlinuz', path: changed.vmlinuz, modulesDir: changed.mods }, env.ctx)).id,
    ).not.toBe(b.id);
    const bare = await getKernel({ kind: 'vmlinuz', path: t.vmlinuz }, env.ctx);
    expect(bare.modulesDir).toBeUndefined();
    expect(bare.id).not.toBe(b.id);
  });

  it('says what is wrong with the files', async () => {
    const t = await tree('6.1.0');
    await expect(getKernel({ kind: 'vmlinuz', path: join(env.dir, 'nope') }, env.ctx)).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/does not exist/),
    });
    await expect(getKernel({ kind: 'vmlinuz', path: t.vmlinuz, modulesDir: env.dir }, env.ctx)).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/has no modules\.dep/),
    });
    const other = await tree('6.2.0');
    await getKernel({ kind: 'vmlinuz', path: t.vmlinuz, modulesDir: other.mods }, env.ctx);
    expect(env.logs('warn')).toEqual([expect.stringMatching(/is 6\.1\.0, but its modules directory is named 6\.2\.0/)]);
  });
});
