// --init distro for an arm64 Debian image, as data: every combination of host, binfmt_misc state, builder, boot
// mode, boot loader and output kind; what each plans (the template's arm64 values, the emulator, UEFI-only GPT,
// GRUB arm64-efi or systemd-boot at the arm64 removable path) or the error that refuses it, with what to do.
import { describe, expect, it } from 'vitest';
import type { BinfmtFacts } from '../src/core/binfmt.js';
import { Img2vmError } from '../src/core/errors.js';
import { parseConvertOptions, type ConvertOptionsInput } from '../src/core/options.js';
import type { ConversionPlan } from '../src/core/plan.js';
import { createRandom } from '../src/core/random.js';
import { GPT_TYPE, partitionByRole } from '../src/disk/layout.js';
import { parseBinfmt } from '../src/guest/binfmt.js';
import { plan } from '../src/plan.js';
import { known, type FlatFacts } from './helpers/facts.js';

const MiB = 1024 * 1024;
const KERNEL = '6.1.0-50-cloud-arm64';
const AARCH64 = (flags: string) =>
  `enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: ${flags}\noffset 0\n` +
  'magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n';

const BINFMTS: Record<string, BinfmtFacts | undefined> = {
  registered: parseBinfmt({ status: 'enabled\n', entries: { 'qemu-aarch64': AARCH64('POF') } }),
  'without F': parseBinfmt({ status: 'enabled\n', entries: { 'qemu-aarch64': AARCH64('P') } }),
  'not mounted': undefined,
};

/** A Debian bookworm arm64 image after its template was built (its kernel in /boot). */
function facts(host: string, binfmt: BinfmtFacts | undefined, builder: 'docker' | 'podman' | 'runc'): FlatFacts {
  return {
    inputs: { hostArchitecture: host, ...(binfmt ? { binfmt } : {}) },
    architecture: 'arm64',
    source: { transport: 'oci', id: `sha256:${'ef'.repeat(32)}`, layers: 1 },
    os: { id: 'debian', idLike: [], versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' },
    builders: { docker: true, podman: true, runc: true },
    process: { entrypoint: [], cmd: ['/bin/bash'], env: [], cwd: '/', user: '' },
    guest: { builder, cached: false, image: `${builder}:0123` },
    kernel: { version: KERNEL, kernelPath: `/boot/vmlinuz-${KERNEL}`, initrdPath: `/boot/initrd.img-${KERNEL}` },
    hasResolved: true,
    content: { blocks4k: 90_000, entries: 12_000, bytes: 350 * MiB, files: 10_000 },
  };
}

function planFor(opts: Partial<ConvertOptionsInput>, f: FlatFacts): ConversionPlan {
  const o = parseConvertOptions({ image: 'oci:/images/debian-arm64', seed: 's', ...opts });
  return plan(o, known(f), createRandom('s'));
}

const HOSTS = ['amd64', 'arm64'] as const;
const BUILDERS = ['auto', 'docker', 'podman', 'runc'] as const;
const BOOTS = ['hybrid', 'uefi', 'bios'] as const;
const LOADERS = ['grub', 'systemd-boot'] as const;
const OUTPUTS = ['/out/d.qcow2', '/out/d.ext4'] as const;

interface Combo {
  host: (typeof HOSTS)[number];
  binfmt: string;
  builder: (typeof BUILDERS)[number];
  boot: (typeof BOOTS)[number];
  bootloader: (typeof LOADERS)[number];
  output: (typeof OUTPUTS)[number];
}

const combos: Combo[] = [];
for (const host of HOSTS)
  for (const binfmt of Object.keys(BINFMTS))
    for (const builder of BUILDERS)
      for (const boot of BOOTS)
        for (const bootloader of LOADERS)
          for (const output of OUTPUTS) combos.push({ host, binfmt, builder, boot, bootloader, output });

/** The refusal, in the order planning checks (the architecture's options, the options, then the strategy's needs). */
function refusal(c: Combo): { kind: string; message: RegExp; hint?: RegExp } | null {
  if (c.boot === 'bios')
    return {
      kind: 'usage',
      message: /--boot bios cannot boot a linux\/arm64 guest: arm64 machines boot through UEFI only/,
    };
  if (c.bootloader === 'systemd-boot' && c.output.endsWith('.ext4'))
    return { kind: 'usage', message: /--bootloader does not apply to --format rootfs/ };
  if (c.host === 'amd64' && c.binfmt !== 'registered')
    return {
      kind: 'toolMissing',
      message: new RegExp(
        `^--init distro runs the image's linux/arm64 programs to install its kernel, and this host is linux/amd64: ${
          c.binfmt === 'not mounted' ? 'binfmt_misc is not mounted' : '.*registered without the F \\(fix-binary\\) flag'
        }`,
      ),
      hint: /^as root \(registering changes the running kernel\): apt-get install qemu-user-static, then scripts\/register-binfmt\.sh or update-binfmts --enable qemu-aarch64; or give --init img2vm/,
    };
  return null;
}

const name = (c: Combo) =>
  `host ${c.host}, binfmt ${c.binfmt}: --builder ${c.builder} --boot ${c.boot} ${c.bootloader} -o ${c.output}`;

describe('plan: --init distro for an arm64 Debian image, every combination as data', () => {
  it.each(combos.map((c) => [name(c), c] as const))('%s', (_n, c) => {
    const opts = {
      init: 'distro' as const,
      builder: c.builder,
      boot: c.boot,
      bootloader: c.bootloader,
      output: c.output,
    };
    const f = facts(c.host, BINFMTS[c.binfmt], c.builder === 'auto' ? 'runc' : c.builder);
    const why = refusal(c);
    if (why) {
      let err: unknown;
      try {
        planFor(opts, f);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(Img2vmError);
      const e = err as Img2vmError;
      expect(e.kind).toBe(why.kind);
      expect(e.message).toMatch(why.message);
      if (why.hint) expect(e.hint).toMatch(why.hint);
      return;
    }
    const p = planFor(opts, f);
    expect(p.architecture).toEqual({ arch: 'arm64', from: 'image' });
    expect(p.guest.strategy).toBe('distro');
    const build = p.guest.build!;
    expect(build.builders).toEqual(c.builder === 'auto' ? ['docker', 'runc', 'podman'] : [c.builder]);
    // The build runs as linux/arm64; on an amd64 host through the registered emulator, natively on an arm64 one.
    expect(build.platform).toBe('linux/arm64');
    expect(build.emulator).toEqual(
      c.host === 'amd64' ? { name: 'qemu-aarch64', interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P' } : null,
    );
    // The template's values for arm64: Debian's arm64 cloud kernel, the getty on the PL011 of QEMU's virt machine.
    expect(build.recipe!.values).toMatchObject({
      kernel_package: 'linux-image-cloud-arm64',
      serial_console: 'ttyAMA0',
    });
    expect(p.kernel!.version).toBe(KERNEL);
    if (c.output.endsWith('.ext4')) {
      expect(p.boot).toMatchObject({ mode: 'direct-kernel', loaders: ['direct-kernel'], cmdline: null });
      expect(p.layout).toBeNull();
      return;
    }
    // UEFI-only GPT with the arm64 root type; the kernel's console on ttyAMA0, never ttyS0.
    expect(p.boot.mode).toBe('uefi');
    expect(p.layout!.table).toBe('gpt');
    expect(partitionByRole(p.layout!, 'root')!.gptType).toBe(GPT_TYPE.rootArm64);
    expect(p.boot.cmdline).toMatch(/ console=ttyAMA0,115200n8/);
    expect(p.boot.cmdline).not.toMatch(/ttyS0/);
    const esp = p.guestFiles.filter((g) => g.fs === 'esp').map((g) => g.path);
    if (c.bootloader === 'systemd-boot') {
      expect(p.boot.loaders).toEqual(['systemd-boot']);
      expect(build.recipe!.values.extra_packages).toMatch(/\bsystemd-boot\b/);
      expect(esp.slice(0, 2)).toEqual(['/EFI/BOOT/BOOTAA64.EFI', '/EFI/systemd/systemd-bootaa64.efi']);
    } else {
      // GRUB arm64-efi at the removable path, booting the distribution's own kernel and initramfs.
      expect(p.boot.loaders).toEqual(['grub-efi']);
      expect(esp).toEqual(['/EFI/BOOT/BOOTAA64.EFI']);
      const cfg = p.guestFiles.find((g) => g.path === '/boot/grub/grub.cfg')!.content!;
      expect(cfg).toContain(`linux /boot/vmlinuz-${KERNEL} `);
      expect(cfg).toContain(`initrd /boot/initrd.img-${KERNEL}`);
    }
  });
});

describe('plan: --init distro for arm64 before the image is read, and --init auto', () => {
  const o = (init: 'distro' | 'auto', extra: Partial<ConvertOptionsInput> = {}) =>
    parseConvertOptions({
      image: 'docker://debian:12',
      output: '/out/d.qcow2',
      platform: 'linux/arm64',
      init,
      ...extra,
    });

  it('without an emulator the refusal comes first, before anything is pulled', () => {
    expect(() => plan(o('distro'), { inputs: { hostArchitecture: 'amd64' } })).toThrow(
      /--init distro runs the image's linux\/arm64 programs .* binfmt_misc is not mounted/,
    );
    const p = plan(o('distro'), { inputs: { hostArchitecture: 'amd64', binfmt: BINFMTS.registered } });
    expect(p.guest.build).toMatchObject({ platform: 'linux/arm64', emulator: { name: 'qemu-aarch64' } });
    expect(p.boot.loaders).toEqual(['grub-efi']);
  });

  it('auto keeps img2vm for a foreign image even with the emulator (an emulated build takes many minutes), distro natively', () => {
    const f = facts('amd64', BINFMTS.registered, 'runc');
    // The image as read, before any build: no tree facts yet.
    const { guest: _g, kernel: _k, ...image } = f;
    const onAmd64 = planFor({ init: 'auto', output: '/out/d.qcow2' }, { ...image, kernel: undefined });
    expect(onAmd64.guest).toMatchObject({
      strategy: 'img2vm',
      reason: expect.stringMatching(
        /linux\/arm64 and this host linux\/amd64: .* under emulation, which takes many minutes \(give --init distro for it/,
      ),
    });
    const onArm64 = planFor(
      { init: 'auto', output: '/out/d.qcow2' },
      { ...image, kernel: undefined, inputs: { hostArchitecture: 'arm64' } },
    );
    expect(onArm64.guest.strategy).toBe('distro');
    expect(onArm64.guest.build).toMatchObject({ platform: 'linux/arm64', emulator: null });
  });

  it('an amd64 image on an amd64 host plans as before: no emulator, amd64 values', () => {
    const p = plan(o('distro', { platform: 'linux/amd64' }), { inputs: { hostArchitecture: 'amd64' } });
    expect(p.guest.build).toMatchObject({ platform: 'linux/amd64', emulator: null });
  });
});
