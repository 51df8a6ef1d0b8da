// The guest's architecture in the plan, as data: every arm64 combination of format, boot mode, partition table,
// boot loader and --init, on an amd64 and on an arm64 host, and an amd64 image on an arm64 host; what each builds
// or the usage error that refuses it, naming both sides.
import { describe, expect, it } from 'vitest';
import { parseConvertOptions, type ConvertOptionsInput } from '../src/core/options.js';
import type { ConversionPlan } from '../src/core/plan.js';
import { createRandom } from '../src/core/random.js';
import { GPT_TYPE, partitionByRole } from '../src/disk/layout.js';
import { plan } from '../src/plan.js';
import { known, type FlatFacts } from './helpers/facts.js';

const MiB = 1024 * 1024;
const KERNEL = '6.12.9+deb13-cloud-arm64';

/** A busybox userland after img2vm's kernel was brought (the img2vm strategy's tree facts). */
function facts(architecture: string, hostArchitecture: string): FlatFacts {
  return {
    inputs: { hostArchitecture },
    architecture,
    source: { transport: 'oci', id: `sha256:${'cd'.repeat(32)}`, layers: 1 },
    os: null,
    process: { entrypoint: [], cmd: ['/bin/sh', '-c', 'exit 3'], env: [], cwd: '/', user: '1000' },
    kernel: {
      version: KERNEL,
      kernelPath: `/boot/img2vm/vmlinuz-${KERNEL}`,
      initrdPath: `/boot/img2vm/initrd.img-${KERNEL}`,
    },
    kernelBundle: { version: KERNEL, vmlinuz: '/cache/vmlinuz', origin: 'Debian trixie', id: 'sha256:00' },
    userland: { login: false, modprobe: false, shell: '/bin/sh' },
    hasResolved: false,
    content: { blocks4k: 1000, entries: 400, bytes: 2 * MiB, files: 390 },
  };
}

function planFor(opts: Partial<ConvertOptionsInput>, f: FlatFacts): ConversionPlan {
  const o = parseConvertOptions({ image: 'oci:/images/busybox', output: '/out/d.qcow2', seed: 's', ...opts });
  return plan(o, known(f), createRandom('s'));
}

const FORMATS: [string, string][] = [
  ['raw', '/out/d.raw'],
  ['qcow2', '/out/d.qcow2'],
  ['vmdk', '/out/d.vmdk'],
  ['containerdisk', '/out/d.tar'],
  ['rootfs', '/out/d.ext4'],
];
const BOOTS = ['hybrid', 'bios', 'uefi'] as const;
const TABLES = [undefined, 'mbr', 'gpt'] as const;
const LOADERS = ['grub', 'systemd-boot'] as const;
const INITS = ['auto', 'img2vm', 'distro', 'image'] as const;
const HOSTS = ['amd64', 'arm64'] as const;

interface Combo {
  host: (typeof HOSTS)[number];
  format: string;
  output: string;
  boot: (typeof BOOTS)[number];
  partitionTable: (typeof TABLES)[number];
  bootloader: (typeof LOADERS)[number];
  init: (typeof INITS)[number];
}

const combos: Combo[] = [];
for (const host of HOSTS)
  for (const [format, output] of FORMATS)
    for (const boot of BOOTS)
      for (const partitionTable of TABLES)
        for (const bootloader of LOADERS)
          for (const init of INITS) combos.push({ host, format, output, boot, partitionTable, bootloader, init });

/** The refusal an arm64 image gets, in the order planning checks; null when it is built. */
function refusal(c: Combo): RegExp | null {
  if (c.boot === 'bios') return /--boot bios cannot boot a linux\/arm64 guest: arm64 machines boot through UEFI only/;
  if (c.partitionTable === 'mbr') return /--partition-table mbr cannot hold a linux\/arm64 guest/;
  if (c.bootloader === 'systemd-boot' && c.format === 'rootfs') return /--bootloader does not apply to --format rootfs/;
  // This busybox image has no distribution (Debian arm64 images are in plan-arch-distro.test.ts); on an amd64
  // host the missing emulator is found first, before the image is read.
  if (c.init === 'distro')
    return c.host === 'arm64'
      ? /the image has no \/etc\/os-release/
      : /--init distro runs the image's linux\/arm64 programs .* this host is linux\/amd64: binfmt_misc is not mounted/;
  return null;
}

const name = (c: Combo) =>
  `host ${c.host}: ${c.format} --boot ${c.boot} table=${c.partitionTable ?? 'default'} ${c.bootloader} --init ${c.init}`;

describe('plan: an arm64 image, every combination as data', () => {
  it.each(combos.map((c) => [name(c), c] as const))('%s', (_n, c) => {
    const { host, output, format, boot, partitionTable, bootloader, init } = c;
    const opts = { output, format, boot, partitionTable, bootloader, init };
    const f = facts('arm64', host);
    const why = refusal(c);
    if (why) {
      expect(() => planFor(opts, f)).toThrow(why);
      return;
    }
    const p = planFor(opts, f);
    expect(p.architecture).toEqual({ arch: 'arm64', from: 'image' });
    // auto never picks a strategy that runs the image's programs for a guest the host cannot run
    expect(p.guest.strategy).toBe(init === 'auto' ? 'img2vm' : init);
    if (format === 'rootfs') {
      // the direct-kernel output: the Image itself for the microVM runners, no firmware, no partitions
      expect(p.boot).toMatchObject({ mode: 'direct-kernel', loaders: ['direct-kernel'], cmdline: null });
      expect(p.layout).toBeNull();
      expect(p.steps.map((s) => `${s.stage}/${s.id}`)).toEqual([
        'source/oci',
        `guest/${p.guest.strategy}`,
        'rootfs/flatten',
        'rootfs/configure',
        'rootfs/direct-kernel',
        'disk/ext4',
        'output/rootfs',
      ]);
      return;
    }
    // UEFI only, GPT only, the arm64 root partition type, the loader at the arm64 removable path
    expect(p.boot.mode).toBe('uefi');
    expect(p.layout!.table).toBe('gpt');
    expect(partitionByRole(p.layout!, 'root')!.gptType).toBe(GPT_TYPE.rootArm64);
    expect(p.boot.cmdline).toMatch(/ console=ttyAMA0,115200n8/);
    if (bootloader === 'systemd-boot') {
      // --boot hybrid means every firmware arm64 has: UEFI, so systemd-boot needs no --boot uefi here
      expect(p.boot.loaders).toEqual(['systemd-boot']);
      expect(partitionByRole(p.layout!, 'esp')!.size).toBe(256 * MiB);
      const esp = p.guestFiles.filter((g) => g.fs === 'esp').map((g) => g.path);
      expect(esp.slice(0, 3)).toEqual([
        '/EFI/BOOT/BOOTAA64.EFI',
        '/EFI/systemd/systemd-bootaa64.efi',
        '/loader/loader.conf',
      ]);
      expect(p.guestFiles.find((g) => g.fs === 'esp')!.from).toBe('work:systemd-bootaa64.efi');
      expect(p.steps.map((s) => s.id)).toContain('systemd-boot');
      return;
    }
    // GRUB arm64-efi
    expect(p.boot.loaders).toEqual(['grub-efi']);
    expect(p.layout!.table).toBe('gpt');
    expect(p.layout!.partitions.map((x) => x.role)).toEqual(['esp', 'root']);
    expect(partitionByRole(p.layout!, 'root')!.gptType).toBe(GPT_TYPE.rootArm64);
    const esp = p.guestFiles.filter((g) => g.fs === 'esp').map((g) => g.path);
    expect(esp).toEqual(['/EFI/BOOT/BOOTAA64.EFI']);
    expect(p.guestFiles.find((g) => g.fs === 'esp')!.from).toBe('work:grub-BOOTAA64.EFI');
    // no host GRUB modules (they would be x86's): everything grub.cfg needs is in the EFI image
    expect(p.guestFiles.some((g) => g.kind === 'copy' && g.path.startsWith('/boot/grub/'))).toBe(false);
    // the kernel's console is the PL011 of QEMU's virt machine; GRUB uses the firmware's console
    expect(p.boot.cmdline).toMatch(/ console=ttyAMA0,115200n8/);
    expect(p.boot.cmdline).not.toMatch(/ttyS0/);
    const cfg = p.guestFiles.find((g) => g.path === '/boot/grub/grub.cfg')!.content!;
    expect(cfg).not.toMatch(/^serial/m);
    expect(cfg).toMatch(new RegExp(`linux /boot/img2vm/vmlinuz-${KERNEL.replaceAll('+', '\\+')} `));
    expect(p.steps.map((s) => `${s.stage}/${s.id}`)).toEqual([
      'source/oci',
      `guest/${p.guest.strategy}`,
      'rootfs/flatten',
      'rootfs/configure',
      'rootfs/grub-efi',
      'disk/gpt',
      'disk/vfat',
      'disk/ext4',
      `output/${format}`,
    ]);
  });
});

describe('plan: where the architecture comes from', () => {
  const opts = (o: Partial<ConvertOptionsInput>) =>
    parseConvertOptions({ image: 'oci:/images/busybox', output: '/out/d.qcow2', init: 'img2vm', ...o });

  it('before the image is read: --platform, else the host', () => {
    const byPlatform = plan(opts({ platform: 'linux/arm64' }), { inputs: { hostArchitecture: 'amd64' } });
    expect(byPlatform.architecture).toEqual({ arch: 'arm64', from: 'platform' });
    expect(byPlatform.boot.loaders).toEqual(['grub-efi']);
    const byHost = plan(opts({}), { inputs: { hostArchitecture: 'arm64' } });
    expect(byHost.architecture).toEqual({ arch: 'arm64', from: 'host' });
    const amd = plan(opts({}), { inputs: { hostArchitecture: 'amd64' } });
    expect(amd.architecture).toEqual({ arch: 'amd64', from: 'host' });
    expect(amd.boot.loaders).toEqual(['grub-bios', 'grub-efi']);
  });

  it("the image's config wins over the host: an arm64-only image without --platform makes an arm64 disk", () => {
    const p = planFor({ init: 'img2vm' }, facts('arm64', 'amd64'));
    expect(p.architecture).toEqual({ arch: 'arm64', from: 'image' });
    expect(p.boot.loaders).toEqual(['grub-efi']);
  });

  it('an image of another architecture than --platform asked for is refused, naming both', () => {
    expect(() => planFor({ platform: 'linux/arm64', init: 'img2vm' }, facts('amd64', 'amd64'))).toThrow(
      /--platform linux\/arm64 was asked for, but the image is linux\/amd64/,
    );
  });

  it('an architecture img2vm makes no disks for is refused', () => {
    expect(() => planFor({ init: 'img2vm' }, facts('riscv64', 'amd64'))).toThrow(
      /the image's architecture is riscv64, and img2vm makes disks for amd64 and arm64 only/,
    );
    expect(() => plan(opts({ platform: 'linux/s390x' }), { inputs: { hostArchitecture: 'amd64' } })).toThrow(
      /--platform linux\/s390x is s390x/,
    );
  });
});

describe('plan: an amd64 image on an arm64 host', () => {
  it('converts with img2vm (nothing runs), BIOS and UEFI as on amd64', () => {
    const p = planFor({ init: 'auto' }, { ...facts('amd64', 'arm64'), os: undefined });
    expect(p.architecture.arch).toBe('amd64');
    expect(p.guest.strategy).toBe('img2vm');
    expect(p.boot.loaders).toEqual(['grub-bios', 'grub-efi']);
    expect(partitionByRole(p.layout!, 'root')!.gptType).toBe(GPT_TYPE.rootX86_64);
    expect(p.guestFiles.filter((g) => g.fs === 'esp').map((g) => g.path)).toEqual(['/EFI/BOOT/BOOTX64.EFI']);
    expect(p.boot.cmdline).toMatch(/ console=ttyS0,115200n8/);
  });

  it('auto leaves out the distro build, which would run amd64 programs; asking for it is refused', () => {
    const f: FlatFacts = {
      ...facts('amd64', 'arm64'),
      os: { id: 'debian', idLike: [], versionId: '12' },
      builders: { docker: true },
    };
    expect(planFor({ init: 'auto' }, f).guest).toMatchObject({
      strategy: 'img2vm',
      reason: expect.stringMatching(
        /the image is linux\/amd64 and this host linux\/arm64: a distribution build would run the image's programs under emulation/,
      ),
    });
    expect(planFor({ init: 'auto' }, { ...f, inputs: { hostArchitecture: 'amd64' } }).guest.strategy).toBe('distro');
    expect(() => planFor({ init: 'distro' }, f)).toThrow(
      /--init distro runs the image's linux\/amd64 programs .* this host is linux\/arm64: binfmt_misc is not mounted/,
    );
  });
});

describe("plan: an arm64 image with an encrypted root under img2vm's init", () => {
  it("has the LUKS2 volume, /boot on a clear partition with img2vm's kernel, UEFI only, nothing of it on the command line", () => {
    const p = planFor({ init: 'img2vm', luksPassword: 'arm64 secret' }, facts('arm64', 'amd64'));
    expect(p.architecture.arch).toBe('arm64');
    expect(p.guest.strategy).toBe('img2vm');
    expect(p.boot.loaders).toEqual(['grub-efi']);
    expect(p.luks).toMatchObject({ cipher: 'aes-xts-plain64', pbkdf: 'pbkdf2' });
    expect(partitionByRole(p.layout!, 'boot')).toBeDefined();
    expect(p.guestFiles.find((g) => g.path === `/boot/img2vm/initrd.img-${KERNEL}`)).toMatchObject({
      fs: 'boot',
      note: expect.stringMatching(/dm-crypt's to unlock the LUKS2 root/),
    });
    expect(p.boot.cmdline).not.toContain('cryptopts');
    expect(JSON.stringify(p)).not.toContain('arm64 secret');
  });
});
