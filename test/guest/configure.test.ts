import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configureGuest, findKernel, resolveInRoot, writeInRoot } from '../../src/guest/configure.js';
import { createRandom } from '../../src/core/random.js';
import { sha512Crypt } from '../../src/guest/credentials.js';

let tmp: string;
let root: string;
let outside: string;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-cfg-'));
  root = join(tmp, 'root');
  outside = join(tmp, 'outside');
  await mkdir(root);
  await mkdir(outside);
  await writeFile(join(outside, 'sentinel'), 'keep');
});
afterEach(() => rm(tmp, { recursive: true, force: true }));

describe('writing into a hostile root', () => {
  it('re-roots absolute and relative symlinked directories', async () => {
    await symlink('/', join(root, 'etc'));
    expect(await resolveInRoot(root, 'etc/fstab')).toBe(join(root, 'fstab'));
    await rm(join(root, 'etc'));
    await symlink('../../../..', join(root, 'etc'));
    expect(await resolveInRoot(root, 'etc/fstab')).toBe(join(root, 'fstab'));
    expect(await resolveInRoot(root, '../../x')).toBe(join(root, 'x'));
  });

  it('replaces a symlinked file instead of writing through it', async () => {
    await mkdir(join(root, 'etc'));
    await symlink(join(outside, 'sentinel'), join(root, 'etc', 'fstab'));
    await writeInRoot(root, 'etc/fstab', 'new');
    expect(await readFile(join(outside, 'sentinel'), 'utf8')).toBe('keep');
    expect((await lstat(join(root, 'etc/fstab'))).isFile()).toBe(true);
    expect(await readFile(join(root, 'etc/fstab'), 'utf8')).toBe('new');
  });

  it('stops symlink loops', async () => {
    await symlink('b', join(root, 'a'));
    await symlink('a', join(root, 'b'));
    await expect(resolveInRoot(root, 'a/x')).rejects.toThrow(/too many symlinks/);
  });

  it('configures fstab, hostname, password and machine-id without touching anything outside', async () => {
    await mkdir(join(root, 'etc'));
    await symlink(join(outside), join(root, 'etc', 'hostname'));
    await writeFile(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n');
    await configureGuest(root, { rootUuid: 'UUID-1', hostname: 'vm1', password: 'pw', random: createRandom('t'), epochSeconds: 86400 * 20000, raw: false });
    expect(await readFile(join(root, 'etc/fstab'), 'utf8')).toContain('UUID=UUID-1\t/\text4');
    expect(await readFile(join(root, 'etc/hostname'), 'utf8')).toBe('vm1\n');
    const shadow = await readFile(join(root, 'etc/shadow'), 'utf8');
    const m = /^root:(\$6\$([^$]+)\$[^:]+):20000:/m.exec(shadow)!;
    expect(sha512Crypt('pw', m[2]!)).toBe(m[1]);
    expect(shadow).toContain('daemon:*:19000');
    expect(await readFile(join(root, 'etc/machine-id'), 'utf8')).toBe('');
    expect(await readdir(outside)).toEqual(['sentinel']);
  });
});

describe('findKernel', () => {
  it('prefers the /vmlinuz links when they point at the newest kernel', async () => {
    await mkdir(join(root, 'boot'));
    for (const v of ['6.1.0-9-cloud-amd64', '6.1.0-10-cloud-amd64']) {
      await writeFile(join(root, 'boot', `vmlinuz-${v}`), '');
      await writeFile(join(root, 'boot', `initrd.img-${v}`), '');
    }
    expect(await findKernel(root)).toEqual({ version: '6.1.0-10-cloud-amd64', kernelPath: '/boot/vmlinuz-6.1.0-10-cloud-amd64', initrdPath: '/boot/initrd.img-6.1.0-10-cloud-amd64' });
    await symlink('boot/vmlinuz-6.1.0-10-cloud-amd64', join(root, 'vmlinuz'));
    await symlink('boot/initrd.img-6.1.0-10-cloud-amd64', join(root, 'initrd.img'));
    expect(await findKernel(root)).toMatchObject({ kernelPath: '/vmlinuz', initrdPath: '/initrd.img' });
  });
  it('finds nothing in an image without /boot, and never looks outside root', async () => {
    expect(await findKernel(root)).toBeUndefined();
    await symlink('/boot', join(root, 'boot'));
    expect(await findKernel(root)).toBeUndefined();
    void readlink;
  });
});

describe('GRUB module directories in a hostile root', () => {
  it('never copies through symlinks the image planted at /boot or inside /boot/grub', async () => {
    const { GRUB_PC_DIR } = await import('../../src/boot/grub-bios.js');
    const { grubModulesCopy } = await import('../../src/boot/grub-config.js');
    const { RootTree } = await import('../../src/rootfs/tree-edit.js');
    const { MemoryStore } = await import('../../src/rootfs/memory-store.js');
    const { writeGuestFilesToTree } = await import('../../src/rootfs/tree-guest.js');
    const { binPath } = await import('../../src/rootfs/tree-path.js');
    const { existsSync } = await import('node:fs');
    expect(existsSync(GRUB_PC_DIR), `${GRUB_PC_DIR} is missing: install grub-pc-bin (scripts/install-deps.sh)`).toBe(true);
    const tree = new RootTree({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });
    // /boot points at the root, and a module path points at a file elsewhere in the image
    tree.symlink(binPath('/boot'), binPath('/'));
    tree.writeFile(binPath('/outside/sentinel'), 'keep', { mode: 0o644 });
    tree.mkdirp(binPath('/grub/i386-pc'));
    tree.symlink(binPath('/grub/i386-pc/normal.mod'), binPath('/outside/sentinel'));
    const copy = grubModulesCopy({ rootUuid: 'u', bootFsUuid: 'u', separateBoot: false, grubDir: '/boot/grub', cmdline: '', title: 'T', kernel: null }, GRUB_PC_DIR, 'i386-pc', 'grub-bios');
    await writeGuestFilesToTree(tree, [copy], async () => {}, tmp);
    expect((await tree.readFile(binPath('/outside/sentinel')))?.toString()).toBe('keep');
    // /boot re-rooted: the modules land at /grub/i386-pc, as real files, never through the planted link
    expect(tree.lookup(binPath('/grub/i386-pc/normal.mod'), { followLast: false })?.kind).toBe('file');
  });
});
