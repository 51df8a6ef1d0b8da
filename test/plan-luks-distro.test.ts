// An encrypted root under each family's own initramfs (--init distro --luks-password): what the build installs and
// what the kernel command line says, for every family, and that the passphrase is nowhere in the plan.
import { describe, expect, it } from 'vitest';
import { parseConvertOptions, type ConvertOptionsInput } from '../src/core/options.js';
import type { ConversionPlan, ImageFacts } from '../src/core/plan.js';
import { createRandom } from '../src/core/random.js';
import { plan } from '../src/plan.js';
import { known, type FlatFacts } from './helpers/facts.js';

const MiB = 1024 * 1024;
const PASSPHRASE = 'n0t-in-the-plan';

function facts(os: ImageFacts['os']): FlatFacts {
  return {
    os,
    content: {
      blocks4k: 70_000,
      entries: 9_000,
      bytes: 270 * MiB,
      files: 7_000,
      boot: { blocks4k: 9_000, entries: 9 },
    },
    kernel: { version: '6.12.0-1', kernelPath: '/vmlinuz', initrdPath: '/initrd.img' },
    hasResolved: false,
  };
}

function planFor(os: ImageFacts['os'], opts: Partial<ConvertOptionsInput> = {}): ConversionPlan {
  const o = parseConvertOptions({
    image: 'oci:/images/x',
    output: '/out/d.qcow2',
    seed: 'luks',
    init: 'distro',
    luksPassword: PASSPHRASE,
    ...opts,
  });
  return plan(o, known(facts(os)), createRandom('luks'));
}

const os = (id: string, versionId: string, idLike: string[] = []) => ({ id, idLike, versionId, prettyName: id });

/** Family, os-release, the packages the build adds, the template values that change, the kernel arguments. */
const FAMILIES: {
  name: string;
  os: ImageFacts['os'];
  packages: string;
  values: Record<string, string>;
  args: (uuid: string) => string[];
  root: (rootUuid: string) => string;
}[] = [
  {
    name: 'Debian 12',
    os: os('debian', '12'),
    packages: 'cryptsetup-initramfs',
    values: {},
    args: (u) => [`cryptopts=target=root_crypt,source=UUID=${u},key=none,luks`],
    root: (r) => `UUID=${r}`,
  },
  {
    name: 'Ubuntu 24.04',
    os: os('ubuntu', '24.04', ['debian']),
    packages: 'cryptsetup-initramfs',
    values: {},
    args: (u) => [`cryptopts=target=root_crypt,source=UUID=${u},key=none,luks`],
    root: (r) => `UUID=${r}`,
  },
  ...[
    os('fedora', '42'),
    os('rocky', '9.5', ['rhel']),
    os('almalinux', '10.0', ['rhel']),
    os('centos', '9', ['rhel']),
  ].map((o) => ({
    name: o.id,
    os: o,
    packages: 'cryptsetup',
    values: { dracut_modules: 'crypt' },
    args: (u: string) => [`rd.luks.uuid=${u}`],
    root: (r: string) => `UUID=${r}`,
  })),
  {
    name: 'Alpine 3.22',
    os: os('alpine', '3.22.1'),
    packages: 'cryptsetup',
    values: { mkinitfs_features: 'ata base ext4 nvme scsi virtio img2vm cryptsetup' },
    args: (u) => [`cryptroot=UUID=${u}`, 'cryptdm=root'],
    root: () => '/dev/mapper/root',
  },
];

describe('--init distro --luks-password, per family', () => {
  for (const f of FAMILIES) {
    it(`${f.name}: installs ${f.packages}, names the volume on the command line, never the passphrase`, () => {
      const p = planFor(f.os);
      const luks = p.luks!;
      const recipe = p.guest.build!.recipe!;
      expect(recipe.values.extra_packages!.split(' ')).toContain(f.packages);
      expect(recipe.values).toMatchObject(f.values);
      const cmdline = p.boot.cmdline!;
      expect(cmdline.split(' ')).toEqual(expect.arrayContaining([`root=${f.root(p.rootUuid)}`, ...f.args(luks.uuid)]));
      expect(cmdline.match(/(^| )root=/g)).toHaveLength(1);
      // The boot loader's entry carries the same command line.
      const grub = p.guestFiles.find((g) => g.path === '/boot/grub/grub.cfg');
      expect(grub?.content).toContain(cmdline);
      expect(JSON.stringify(p)).not.toContain(PASSPHRASE);
    });
  }

  it('without --luks-password nothing of it is on the command line or in the build', () => {
    for (const f of FAMILIES) {
      const p = planFor(f.os, { luksPassword: undefined });
      expect(p.luks).toBeNull();
      expect(p.boot.cmdline).toMatch(new RegExp(`^root=UUID=${p.rootUuid} `));
      expect(p.boot.cmdline).not.toMatch(/crypt|luks/);
      expect(p.guest.build!.recipe!.values.extra_packages).not.toContain('cryptsetup');
    }
  });

  it("--init image: the image family's arguments where img2vm knows it, none for an unknown one", () => {
    const alpine = planFor(os('alpine', '3.22.1'), { init: 'image' });
    expect(alpine.boot.cmdline).toContain(`cryptroot=UUID=${alpine.luks!.uuid} cryptdm=root`);
    const unknown = planFor(os('toyos', '1'), { init: 'image' });
    expect(unknown.boot.cmdline).toBe(`root=UUID=${unknown.rootUuid} ro console=tty0 console=ttyS0,115200n8`);
  });

  it('--init img2vm: its init finds the volume in its spec, the command line names none', () => {
    const p = planFor(null, { init: 'img2vm' });
    expect(p.luks).not.toBeNull();
    expect(p.boot.cmdline).not.toMatch(/crypt|luks/);
  });
});
