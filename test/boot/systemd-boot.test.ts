// systemd-boot's ESP as img2vm lays it out: the same names the guest's kernel-install uses, so upgrades line up.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blsPaths,
  kernelInstallFiles,
  renderBlsEntry,
  renderLoaderConf,
  SYSTEMD_BOOT_EFI,
  systemdBoot,
} from '../../src/boot/systemd-boot.js';
import type { ConversionPlan } from '../../src/core/plan.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';

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
    expect(
      renderBlsEntry({
        title: 'Debian GNU/Linux 12 (bookworm)',
        kernelVersion: '6.1.0-50-cloud-amd64',
        cmdline: 'root=UUID=u ro console=ttyS0,115200n8',
        hasInitrd: true,
        sortKey: 'debian',
      }),
    ).toBe(
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
    const { guestFiles } = systemdBoot.files({
      rootUuid: 'u',
      bootFsUuid: 'u',
      separateBoot: false,
      grubDir: '/boot/grub',
      cmdline: 'root=UUID=u',
      title: 'T',
      kernel: { version: '6.9', kernelPath: '/vmlinuz', initrdPath: '/initrd.img' },
    });
    expect(
      guestFiles.filter((f) => f.fs === 'esp').map((f) => ({ src: f.from ?? 'content', dest: f.path.slice(1) })),
    ).toEqual([
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
  it('tells kernel-install the entry token, command line and BLS layout', () => {
    const files = new Map(kernelInstallFiles('root=UUID=u ro').map((f) => [f.path, f]));
    expect(files.get('/etc/kernel/entry-token')).toMatchObject({ kind: 'file', fs: 'root', content: 'img2vm\n' });
    expect(files.get('/etc/kernel/cmdline')).toMatchObject({ kind: 'file', fs: 'root', content: 'root=UUID=u ro\n' });
    expect(files.get('/etc/kernel/install.conf')!.content).toMatch(/^layout=bls$/m);
  });
  it("prefers the guest's systemd-boot binary and falls back to the host's", async () => {
    const { existsSync, readFileSync } = await import('node:fs');
    expect(
      existsSync(SYSTEMD_BOOT_EFI),
      `${SYSTEMD_BOOT_EFI} is missing: install systemd-boot-efi (scripts/install-deps.sh)`,
    ).toBe(true);
    const work = join(tmp, 'work');
    await mkdir(work);
    const env = {
      work,
      signal: new AbortController().signal,
      sink: () => {},
      scope: new Scope(),
      random: createRandom('t'),
      epoch: 0,
      fixedEpoch: 0,
    };
    const plan = { architecture: { arch: 'amd64', from: 'image' } } as ConversionPlan;
    await systemdBoot.prepare!(plan, new Map(), env);
    expect(readFileSync(join(work, 'systemd-bootx64.efi')).equals(readFileSync(SYSTEMD_BOOT_EFI))).toBe(true);
    const guest = join(tmp, 'guest.efi');
    await writeFile(guest, 'guest');
    await systemdBoot.prepare!(plan, new Map([['guest-systemd-bootx64.efi', guest]]), env);
    expect(readFileSync(join(work, 'systemd-bootx64.efi'), 'utf8')).toBe('guest');
  });
});
