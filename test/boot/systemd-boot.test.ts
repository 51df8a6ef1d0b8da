// systemd-boot's ESP as img2vm lays it out: the same names the guest's kernel-install uses, so upgrades line up.
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blsPaths, configureKernelInstall, findSystemdBootEfi, renderBlsEntry, renderLoaderConf, SYSTEMD_BOOT_EFI, systemdBoot,
} from '../../src/boot/systemd-boot.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-sdboot-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('systemd-boot layout', () => {
  it('names kernel, initrd and entry as kernel-install does with entry token img2vm', () => {
    expect(blsPaths('6.1.0-50-cloud-amd64')).toEqual({
      dir: 'img2vm/6.1.0-50-cloud-amd64',
      linux: 'img2vm/6.1.0-50-cloud-amd64/linux',
      initrd: 'img2vm/6.1.0-50-cloud-amd64/initrd.img-6.1.0-50-cloud-amd64',
      entry: 'loader/entries/img2vm-6.1.0-50-cloud-amd64.conf',
    });
  });
  it('writes a type #1 entry (golden)', () => {
    expect(renderBlsEntry({ title: 'Debian GNU/Linux 12 (bookworm)', kernelVersion: '6.1.0-50-cloud-amd64', cmdline: 'root=UUID=u ro console=ttyS0,115200n8', hasInitrd: true, sortKey: 'debian' })).toBe(
      [
        'title      Debian GNU/Linux 12 (bookworm)',
        'version    6.1.0-50-cloud-amd64',
        'sort-key   debian',
        'options    root=UUID=u ro console=ttyS0,115200n8',
        'linux      /img2vm/6.1.0-50-cloud-amd64/linux',
        'initrd     /img2vm/6.1.0-50-cloud-amd64/initrd.img-6.1.0-50-cloud-amd64',
        '',
      ].join('\n'),
    );
    const bare = renderBlsEntry({ title: 'Linux', kernelVersion: '6.9', cmdline: 'root=UUID=u', hasInitrd: false });
    expect(bare).not.toMatch(/initrd|sort-key/);
  });
  it('boots the default entry at once, with the editor off', () => {
    expect(renderLoaderConf()).toMatch(/^timeout 0$/m);
    expect(renderLoaderConf()).toMatch(/^editor no$/m);
  });
  it('puts the loader at the removable path and where bootctl looks for it', () => {
    const { guestFiles } = systemdBoot.files({ rootUuid: 'u', bootFsUuid: 'u', separateBoot: false, grubDir: '/boot/grub', cmdline: 'root=UUID=u', title: 'T', kernel: { version: '6.9', kernelPath: '/vmlinuz', initrdPath: '/initrd.img' } });
    expect(guestFiles.filter((f) => f.fs === 'esp').map((f) => ({ src: f.from ?? 'content', dest: f.path.slice(1) }))).toEqual([
      { src: 'work:systemd-bootx64.efi', dest: 'EFI/BOOT/BOOTX64.EFI' },
      { src: 'work:systemd-bootx64.efi', dest: 'EFI/systemd/systemd-bootx64.efi' },
      { src: 'content', dest: 'loader/loader.conf' },
      { src: 'content', dest: 'loader/entries/img2vm-6.9.conf' },
      { src: 'work:vmlinuz', dest: 'img2vm/6.9/linux' },
      { src: 'work:initrd.img', dest: 'img2vm/6.9/initrd.img-6.9' },
    ]);
  });
});

describe('guest configuration', () => {
  it('tells kernel-install the entry token, command line and BLS layout', async () => {
    const root = join(tmp, 'root1');
    await mkdir(root);
    await configureKernelInstall(root, 'root=UUID=u ro');
    expect(await readFile(join(root, 'etc/kernel/entry-token'), 'utf8')).toBe('img2vm\n');
    expect(await readFile(join(root, 'etc/kernel/cmdline'), 'utf8')).toBe('root=UUID=u ro\n');
    expect(await readFile(join(root, 'etc/kernel/install.conf'), 'utf8')).toMatch(/^layout=bls$/m);
  });
  it('writes inside the root even when the image makes /etc/kernel a symlink out of it', async () => {
    const root = join(tmp, 'root2');
    const outside = join(tmp, 'outside');
    await mkdir(join(root, 'etc'), { recursive: true });
    await mkdir(outside);
    await symlink(outside, join(root, 'etc', 'kernel'));
    await configureKernelInstall(root, 'x');
    await expect(readFile(join(outside, 'cmdline'), 'utf8')).rejects.toThrow();
  });
  it("prefers the guest's systemd-boot binary and falls back to the host's", async () => {
    const root = join(tmp, 'root3');
    await mkdir(root);
    expect(await findSystemdBootEfi(root)).toBe(SYSTEMD_BOOT_EFI);
    await mkdir(join(root, 'usr/lib/systemd/boot/efi'), { recursive: true });
    await writeFile(join(root, SYSTEMD_BOOT_EFI), 'guest');
    expect(await findSystemdBootEfi(root)).toBe(join(root, SYSTEMD_BOOT_EFI));
  });
});
