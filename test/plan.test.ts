// The plan as data: every combination of boot mode, partition table, separate /boot, boot loader and format,
// checked for what it builds instead of booting each; plus a golden plan for the default conversion.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConvertOptions, type ConvertOptionsInput } from '../src/core/options.js';
import type { ConversionPlan } from '../src/core/plan.js';
import { known, type FlatFacts } from './helpers/facts.js';
import { createRandom } from '../src/core/random.js';
import { GPT_TYPE, partitionByRole } from '../src/disk/layout.js';
import { plan } from '../src/plan.js';

const MiB = 1024 * 1024;

/** A Debian image after its guest build: what flattening and findKernelInTree would report. */
const FACTS: FlatFacts = {
  source: {
    transport: 'docker-daemon',
    id: `sha256:${'ab'.repeat(32)}`,
    layers: 2,
    daemonId: `sha256:${'ab'.repeat(32)}`,
  },
  os: { id: 'debian', idLike: [], versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' },
  guest: {
    distribution: 'Debian GNU/Linux 12 (bookworm)',
    template: 'debian',
    builder: 'docker',
    cached: true,
    image: 'img2vm-cache:0123',
  },
  content: {
    blocks4k: 70_000,
    entries: 9_000,
    bytes: 270 * MiB,
    files: 7_000,
    boot: { blocks4k: 12_000, entries: 12 },
  },
  kernel: { version: '6.1.0-28-cloud-amd64', kernelPath: '/vmlinuz', initrdPath: '/initrd.img' },
  hasResolved: true,
  process: {
    entrypoint: [],
    cmd: ['bash'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    cwd: '/',
    user: '',
  },
};

function planFor(opts: Partial<ConvertOptionsInput>, facts: FlatFacts = FACTS, seed = 'fixed'): ConversionPlan {
  const o = parseConvertOptions({ image: 'img2vm-demo:bookworm', output: '/out/disk.qcow2', seed, ...opts });
  return plan(o, known(facts), createRandom(seed));
}

const FORMATS: [string, string][] = [
  ['raw', '/out/d.raw'],
  ['qcow2', '/out/d.qcow2'],
  ['vmdk', '/out/d.vmdk'],
  ['vhdx', '/out/d.vhdx'],
  ['vhd', '/out/d.vhd'],
  ['vdi', '/out/d.vdi'],
  ['containerdisk', '/out/d.tar'],
  ['rootfs', '/out/d.ext4'],
];
const BOOTS = ['hybrid', 'bios', 'uefi'] as const;
const TABLES = [undefined, 'mbr', 'gpt'] as const;
const BOOT_PARTS = [undefined, '256M'] as const;
const LOADERS = ['grub', 'systemd-boot'] as const;

interface Combo {
  format: string;
  output: string;
  boot: (typeof BOOTS)[number];
  partitionTable: (typeof TABLES)[number];
  bootPartition: (typeof BOOT_PARTS)[number];
  bootloader: (typeof LOADERS)[number];
}

const combos: Combo[] = [];
for (const [format, output] of FORMATS)
  for (const boot of BOOTS)
    for (const partitionTable of TABLES)
      for (const bootPartition of BOOT_PARTS)
        for (const bootloader of LOADERS)
          combos.push({ format, output, boot, partitionTable, bootPartition, bootloader });

/** The refusals plan() must make, and why; null when the combination is valid. */
function refusal(c: Combo): RegExp | null {
  const direct = c.format === 'rootfs';
  if (c.bootloader === 'systemd-boot') {
    if (direct) return /--bootloader does not apply to --format rootfs/;
    if (c.boot !== 'uefi') return /systemd-boot boots UEFI only/;
    if (c.bootPartition) return /--boot-partition does not apply to systemd-boot/;
  }
  if (direct && c.bootPartition) return /--boot-partition does not apply to --format rootfs/;
  return null;
}

const name = (c: Combo) =>
  `${c.format} ${c.boot} table=${c.partitionTable ?? 'default'} boot-partition=${c.bootPartition ?? 'no'} ${c.bootloader}`;

describe('plan: every combination, as data', () => {
  it.each(combos.map((c) => [name(c), c] as const))('%s', (_n, c) => {
    const opts = {
      output: c.output,
      format: c.format,
      boot: c.boot,
      partitionTable: c.partitionTable,
      bootPartition: c.bootPartition,
      bootloader: c.bootloader,
    };
    const why = refusal(c);
    if (why) {
      expect(() => planFor(opts)).toThrow(why);
      return;
    }
    const p = planFor(opts);
    const direct = c.format === 'rootfs';
    const bios = !direct && c.boot !== 'uefi';
    const uefi = !direct && c.boot !== 'bios';
    const sdboot = uefi && c.bootloader === 'systemd-boot';
    const table = c.partitionTable ?? (c.boot === 'bios' ? 'mbr' : 'gpt');

    // the boot loaders, in install order
    const loaders = direct
      ? ['direct-kernel']
      : [...(bios ? ['grub-bios'] : []), ...(uefi ? [sdboot ? 'systemd-boot' : 'grub-efi'] : [])];
    expect(p.boot.loaders).toEqual(loaders);
    expect(p.boot.mode).toBe(direct ? 'direct-kernel' : c.boot);

    // the steps, in order, each under the id the CLI spells
    const disk = direct
      ? ['disk/ext4']
      : [`disk/${table}`, ...(uefi ? ['disk/vfat'] : []), ...(c.bootPartition ? ['disk/ext4'] : []), 'disk/ext4'];
    // loaders that make ESP files or a vmlinux do it in the rootfs stage; only GRUB BIOS writes boot code after
    expect(p.steps.map((s) => `${s.stage}/${s.id}`)).toEqual([
      'source/docker-daemon',
      'guest/distro',
      'rootfs/flatten',
      'rootfs/configure',
      ...loaders.filter((l) => l !== 'grub-bios').map((l) => `rootfs/${l}`),
      ...disk,
      ...loaders.filter((l) => l === 'grub-bios').map((l) => `boot/${l}`),
      `output/${c.format}`,
    ]);

    const root = p.filesystems.find((f) => f.role === 'root')!;
    expect(root.type).toBe('ext4');
    if (direct) {
      expect(p.layout).toBeNull();
      expect(root.offset).toBe(0);
      expect(p.filesystems.map((f) => f.role)).toEqual(['root']);
      expect(p.exports.map((e) => e.as)).toEqual(['vmlinuz', 'initrd.img']);
      expect(p.output.sideFiles.map((f) => f.replace('/out/', ''))).toEqual([
        'd.vmlinuz',
        'd.vmlinux',
        'd.initrd.img',
        'd.firecracker.json',
        'd.cloud-hypervisor.sh',
      ]);
      expect(p.guestFiles.some((f) => f.path === '/boot/grub/grub.cfg')).toBe(false);
      return;
    }
    const l = p.layout!;
    expect(l.table).toBe(table);
    const roles = [
      ...(bios && table === 'gpt' ? ['bios-boot'] : []),
      ...(uefi ? ['esp'] : []),
      ...(c.bootPartition ? ['boot'] : []),
      'root',
    ];
    expect(l.partitions.map((x) => x.role)).toEqual(roles);
    // partitions are 1 MiB aligned, in order, without overlap; root fills the disk up to the GPT backup
    let at = MiB;
    for (const x of l.partitions) {
      expect(x.start).toBe(at);
      expect(x.start % MiB).toBe(0);
      expect(x.size % MiB).toBe(0);
      at = x.start + x.size;
    }
    expect(l.diskSize - at).toBe(table === 'gpt' ? MiB : 0);
    if (uefi) expect(partitionByRole(l, 'esp')!.size).toBe(sdboot ? 256 * MiB : 64 * MiB);
    if (c.bootPartition) expect(partitionByRole(l, 'boot')!.size).toBe(256 * MiB);
    if (table === 'gpt') expect(partitionByRole(l, 'root')!.gptType).toBe(GPT_TYPE.rootX86_64);
    // the MBR active flag sits where GRUB reads from; GPT disks have none
    expect(l.partitions.filter((x) => x.bootable).map((x) => x.role)).toEqual(
      table === 'mbr' && bios ? [c.bootPartition ? 'boot' : 'root'] : [],
    );

    // each file system sits on its partition
    for (const fs of p.filesystems) {
      const part = partitionByRole(l, fs.role)!;
      expect([fs.offset, fs.size]).toEqual([part.start, part.size]);
    }
    expect(p.filesystems.map((f) => `${f.role}:${f.type}`)).toEqual([
      ...(uefi ? ['esp:vfat'] : []),
      ...(c.bootPartition ? ['boot:ext4'] : []),
      'root:ext4',
    ]);

    // fstab names every file system the guest mounts, by UUID
    const fstab = p.guestFiles.find((f) => f.path === '/etc/fstab')!.content!;
    for (const fs of p.filesystems)
      expect(fstab).toContain(`UUID=${fs.uuid}\t${{ root: '/', boot: '/boot', esp: '/boot/efi' }[fs.role]}\t`);

    // grub.cfg: only for GRUB, on /boot's own file system when separate, with paths relative to it
    const cfg = p.guestFiles.find((f) => f.path === '/boot/grub/grub.cfg');
    if (sdboot && !bios) expect(cfg).toBeUndefined();
    else {
      expect(cfg!.fs).toBe(c.bootPartition ? 'boot' : 'root');
      expect(cfg!.content).toContain(
        c.bootPartition ? 'linux /vmlinuz-6.1.0-28-cloud-amd64 root=UUID=' : 'linux /vmlinuz root=UUID=',
      );
      expect(cfg!.content).toContain(`root=UUID=${root.uuid} ro`);
      expect(p.boot.grubDir).toBe(c.bootPartition ? '/grub' : '/boot/grub');
    }
    const copies = p.guestFiles.filter((f) => f.kind === 'copy').map((f) => f.path);
    expect(copies).toEqual([
      ...(bios ? ['/boot/grub/i386-pc'] : []),
      ...(uefi && !sdboot ? ['/boot/grub/x86_64-efi'] : []),
    ]);

    // systemd-boot: kernel-install learns the layout, and the ESP gets loader, entry, kernel and initrd
    const esp = p.guestFiles.filter((f) => f.fs === 'esp').map((f) => f.path);
    if (sdboot) {
      expect(esp).toEqual([
        '/EFI/BOOT/BOOTX64.EFI',
        '/EFI/systemd/systemd-bootx64.efi',
        '/loader/loader.conf',
        '/loader/entries/img2vm-6.1.0-28-cloud-amd64.conf',
        '/img2vm/6.1.0-28-cloud-amd64/linux',
        '/img2vm/6.1.0-28-cloud-amd64/initrd.img-6.1.0-28-cloud-amd64',
      ]);
      expect(p.guestFiles.find((f) => f.path === '/etc/kernel/cmdline')!.content).toBe(`${p.boot.cmdline}\n`);
      expect(p.exports.map((e) => e.as)).toEqual(['vmlinuz', 'initrd.img', 'guest-systemd-bootx64.efi']);
    } else expect(esp).toEqual(uefi ? ['/EFI/BOOT/BOOTX64.EFI'] : []);

    expect(p.output.format).toBe(c.format);
    expect(p.output.sideFiles).toEqual([]);
  });
});

describe('plan: ids, sizes and strategies', () => {
  it('is a pure function: the same options, facts and seed give the same plan; another seed other ids', () => {
    expect(planFor({})).toEqual(planFor({}));
    const a = planFor({});
    const b = planFor({}, FACTS, 'other');
    expect(b.filesystems.map((f) => f.uuid)).not.toEqual(a.filesystems.map((f) => f.uuid));
    expect(b.layout!.diskGuid).not.toBe(a.layout!.diskGuid);
  });

  it('keeps every id when a fact arrives or an unrelated option changes', () => {
    // Before the guest stage: no tree facts (no kernel) and no content yet.
    const before = planFor(
      {},
      { ...FACTS, kernel: undefined, content: undefined, hasResolved: undefined, guest: undefined },
    );
    const after = planFor({});
    expect(before.layout).toBeNull();
    expect(before.unknown).toEqual(['kernel', 'content']);
    expect(before.guestFiles.find((f) => f.path === '/boot/grub/grub.cfg')!.content).toBeUndefined();
    expect(after.filesystems.find((f) => f.role === 'root')!.uuid).toBe(
      planFor({ bootPartition: '512M' }).filesystems.find((f) => f.role === 'root')!.uuid,
    );
    expect(after.guestFiles.find((f) => f.path === '/etc/fstab')!.content).toContain(
      after.filesystems.find((f) => f.role === 'root')!.uuid,
    );
  });

  it('fits the disk to the content, or takes --size and refuses one too small', () => {
    const fitted = planFor({});
    expect(fitted.sizing).toBe('fitted');
    const fixed = planFor({ size: '4G' });
    expect(fixed.sizing).toBe('fixed');
    expect(fixed.layout!.diskSize).toBe(4 * 1024 * MiB);
    expect(() => planFor({ size: '100M' })).toThrow(/--size 100M is too small: the image needs at least/);
    expect(() => planFor({ bootPartition: '8M' })).toThrow(/--boot-partition 8M is too small: \/boot needs at least/);
  });

  it('writes hostname, hosts, machine-id and the resolver link for distro guests, only fstab and the password for --raw', () => {
    const paths = (p: ConversionPlan) =>
      p.guestFiles
        .filter((f) => f.by !== 'grub' && f.by !== 'grub-bios' && f.by !== 'grub-efi')
        .map((f) => `${f.kind} ${f.path}`);
    expect(paths(planFor({ password: 'pw' }))).toEqual([
      'file /etc/fstab',
      'dir /boot/efi',
      'remove /.dockerenv',
      'file /etc/hostname',
      'file /etc/hosts',
      'file /etc/machine-id',
      'symlink /etc/resolv.conf',
      'edit /etc/passwd, /etc/shadow, /etc/group',
    ]);
    const raw = planFor({ raw: true });
    expect(raw.guest.strategy).toBe('image');
    expect(raw.steps[1]).toMatchObject({ stage: 'guest', id: 'image' });
    expect(paths(raw)).toEqual(['file /etc/fstab', 'dir /boot/efi', 'remove /.dockerenv']);
    expect(paths(planFor({ raw: true, password: 'pw' })).at(-1)).toBe('edit /etc/shadow');
    expect(planFor({ hostname: 'web-1' }).guestFiles.find((f) => f.path === '/etc/hostname')!.content).toBe('web-1\n');
    // the password is never part of the plan
    expect(JSON.stringify(planFor({ password: 's3cret-pw' }))).not.toContain('s3cret-pw');
  });

  it('pushes after the containerdisk output, and with --push alone keeps no file', () => {
    const p = planFor({ output: undefined, format: undefined, push: '127.0.0.1:5000/disk:1' });
    expect(p.output).toMatchObject({ format: 'containerdisk', path: null, push: '127.0.0.1:5000/disk:1' });
    expect(p.steps.slice(-2).map((s) => `${s.stage}/${s.id}`)).toEqual(['output/containerdisk', 'output/push']);
    // Any other disk format is pushed as an OCI artifact after it is written; the direct-kernel output is not a disk.
    expect(
      planFor({ push: '127.0.0.1:5000/disk:1' })
        .steps.slice(-2)
        .map((s) => `${s.stage}/${s.id}`),
    ).toEqual(['output/qcow2', 'output/push']);
    expect(() => planFor({ output: 'x.ext4', push: '127.0.0.1:5000/disk:1' })).toThrow(
      /--push does not apply to --format rootfs/,
    );
  });

  it('names the transport of each kind of reference', () => {
    const ids = [
      'docker://127.0.0.1:5000/a:1',
      'docker-daemon:a:1',
      'oci:/l:1',
      'oci-archive:/a.tar',
      'docker-archive:/s.tar',
      'a:1',
    ].map((image) => plan(parseConvertOptions({ image, output: '/o/d.raw', seed: 's' })).steps[0]!.id);
    expect(ids).toEqual(['docker', 'docker-daemon', 'oci', 'oci-archive', 'docker-archive', 'docker-daemon']);
  });

  it('matches the golden plan of the default conversion (UPDATE_GOLDEN=1 rewrites it)', () => {
    const golden = join(import.meta.dirname, 'golden', 'plan-default.json');
    const text = `${JSON.stringify(planFor({ password: 'pw' }), null, 2)}\n`;
    if (process.env.UPDATE_GOLDEN) writeFileSync(golden, text);
    expect(text).toBe(readFileSync(golden, 'utf8'));
  });
});

describe('plan: --init img2vm and auto', () => {
  const bundle = {
    version: '6.12.118+deb13-cloud-amd64',
    vmlinuz: '/cache/vmlinuz',
    modulesDir: '/cache/lib/modules/6.12.118+deb13-cloud-amd64',
    origin: 'Debian trixie',
    id: 'sha256:1',
  };
  const scratch: FlatFacts = {
    source: { transport: 'oci-archive', id: `sha256:${'cd'.repeat(32)}`, layers: 1 },
    os: null,
    process: { entrypoint: ['/hello'], cmd: ['a'], env: ['X=1'], cwd: '/work', user: '' },
    userland: { login: false, modprobe: false, shell: null },
    content: { blocks4k: 10, entries: 3, bytes: 40_000, files: 1 },
  };
  const withKernel: FlatFacts = {
    ...scratch,
    kernelBundle: bundle,
    kernel: {
      version: bundle.version,
      kernelPath: `/boot/img2vm/vmlinuz-${bundle.version}`,
      initrdPath: `/boot/img2vm/initrd.img-${bundle.version}`,
      kernelFile: `/boot/img2vm/vmlinuz-${bundle.version}`,
      initrdFile: `/boot/img2vm/initrd.img-${bundle.version}`,
    },
  };

  it("boots img2vm's kernel and initramfs from /boot/img2vm, running the image's command as the workload", () => {
    const p = planFor({ init: 'img2vm' }, withKernel);
    expect(p.steps[1]).toMatchObject({ stage: 'guest', id: 'img2vm' });
    expect(p.guest.init).toMatchObject({ mode: 'workload', argv: ['/hello', 'a'], cwd: '/work', user: '' });
    const files = p.guestFiles.filter((f) => f.by === 'img2vm').map((f) => `${f.kind} ${f.path} ${f.from}`);
    expect(files).toEqual([
      `file /boot/img2vm/vmlinuz-${bundle.version} /cache/vmlinuz`,
      `file /boot/img2vm/initrd.img-${bundle.version} work:img2vm-initrd.img`,
    ]);
    expect(p.guestFiles.find((f) => f.path === '/boot/grub/grub.cfg')!.content).toContain(
      `linux /boot/img2vm/vmlinuz-${bundle.version} root=UUID=${p.rootUuid}`,
    );
    // no hostname or machine-id files: img2vm's init sets the hostname and mounts /etc/hosts itself
    expect(p.guestFiles.some((f) => f.path === '/etc/hostname' || f.path === '/etc/machine-id')).toBe(false);
  });

  it('--entrypoint-service: a console with the image command as a service beside it; an image without a command is refused', () => {
    const p = planFor(
      { init: 'img2vm', entrypointService: true, password: 'pw' },
      { ...withKernel, userland: { login: true, modprobe: false, shell: '/bin/bash' } },
    );
    expect(p.guest.init).toMatchObject({
      mode: 'console',
      argv: [],
      service: ['/hello', 'a'],
      cwd: '/work',
      login: true,
    });
    expect(p.guestFiles.some((f) => f.path.includes('img2vm-entrypoint'))).toBe(false);
    const none = { ...withKernel, process: { ...withKernel.process!, entrypoint: [], cmd: [] } };
    expect(() => planFor({ init: 'img2vm', entrypointService: true }, none)).toThrow(
      /--entrypoint-service: the image has no ENTRYPOINT or CMD/,
    );
  });

  it("gives an image that loads modules the kernel's /lib/modules, a scratch image only its initramfs", () => {
    const copy = (f: FlatFacts) =>
      planFor({ init: 'img2vm' }, f)
        .guestFiles.filter((x) => x.kind === 'copy' && x.by === 'img2vm')
        .map((x) => x.path);
    expect(copy(withKernel)).toEqual([]);
    expect(copy({ ...withKernel, userland: { login: true, modprobe: true, shell: '/bin/bash' } })).toEqual([
      `/lib/modules/${bundle.version}`,
    ]);
  });

  it('direct-kernel output exports the kernel and initramfs and tells Firecracker to end with a reboot', () => {
    const p = planFor({ init: 'img2vm', output: '/out/s.ext4' }, withKernel);
    expect(p.exports).toEqual([
      { path: `/boot/img2vm/vmlinuz-${bundle.version}`, as: 'vmlinuz' },
      { path: `/boot/img2vm/initrd.img-${bundle.version}`, as: 'initrd.img' },
    ]);
  });

  it('auto takes distro when the distribution has a template and a builder answers, img2vm otherwise, and says why', () => {
    const debian = { ...FACTS, guest: undefined, kernel: undefined };
    expect(planFor({}, { ...debian, builders: { docker: true } }).guest.strategy).toBe('distro');
    const noBuilder = planFor({}, { ...debian, builders: { docker: false } }).guest;
    expect(noBuilder).toMatchObject({ strategy: 'img2vm', reason: expect.stringMatching(/no builder is available/) });
    expect(planFor({}, scratch).guest).toMatchObject({
      strategy: 'img2vm',
      reason: expect.stringMatching(/no \/etc\/os-release/),
    });
    const other = planFor(
      {},
      { ...debian, os: { id: 'toyos', idLike: [], prettyName: 'Toy OS 1' }, builders: { docker: true } },
    ).guest;
    expect(other).toMatchObject({ strategy: 'img2vm', reason: expect.stringMatching(/no template for Toy OS 1/) });
    // before the image is read, the plan assumes distro; --init img2vm never changes its mind
    expect(planFor({}, {}).guest.strategy).toBe('distro');
    expect(planFor({ init: 'img2vm' }, { ...debian, builders: { docker: true } }).guest.strategy).toBe('img2vm');
  });
});

describe('plan: guest configuration options', () => {
  const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0rT3Mm8VHZb2PaZ4xO2sC1pZ6J7nN8u1e2bVrQk0a user@host\n';
  const withKey: FlatFacts = { ...FACTS, inputs: { sshKey: { file: '/k/id.pub', text: KEY } } };

  it('--ssh-key and --user: host keys the image carries are removed, accounts are edited when written; no secret in the plan', () => {
    const p = planFor({ password: 'hunter22', user: 'alice' }, withKey);
    const distro = p.guestFiles.filter((f) => f.by === 'distro');
    expect(distro.find((f) => f.kind === 'remove')).toMatchObject({ path: '/etc/ssh', filter: 'ssh_host_*' });
    expect(distro.find((f) => f.kind === 'edit')!.note).toBe(
      "root's password (SHA-512 crypt); the sudo user alice with the same password; authorized_keys from /k/id.pub",
    );
    expect(JSON.stringify(p)).not.toMatch(/hunter22|\$6\$/);
  });

  it('--dns writes the servers in the network stack the distribution uses', () => {
    const p = planFor({ dns: ['192.0.2.1,192.0.2.2'] });
    const f = p.guestFiles.find((x) => x.path === '/etc/systemd/resolved.conf.d/90-img2vm-dns.conf');
    expect(f!.content).toContain('DNS=192.0.2.1 192.0.2.2');
  });

  it('--entrypoint-service writes a unit for the image command and enables it', () => {
    const p = planFor(
      { entrypointService: true },
      { ...FACTS, process: { entrypoint: ['/app'], cmd: ['--port', '80'], env: ['A=1'], cwd: '/srv', user: 'nobody' } },
    );
    const unit = p.guestFiles.find((x) => x.kind === 'file' && x.path.endsWith('img2vm-entrypoint.service'));
    expect(unit!.content).toMatch(/ExecStart=.*\/app.*--port.*80/);
    expect(p.guestFiles.some((x) => x.kind === 'symlink' && x.path.includes('multi-user.target.wants'))).toBe(true);
  });

  it('refuses options that need the template when img2vm or the image boots itself', () => {
    expect(() => planFor({ init: 'img2vm', user: 'alice', password: 'x' })).toThrow(
      /--user installs packages from the distribution's template, which img2vm's own init does not use/,
    );
    expect(() => planFor({ raw: true, cloudInit: true })).toThrow(/--cloud-init installs packages/);
    // img2vm's init runs the service itself; an image's own init would never see it
    expect(() => planFor({ raw: true, entrypointService: true })).toThrow(
      /--entrypoint-service installs packages from the distribution's template, which the image's own kernel and init/,
    );
    expect(() => planFor({ init: 'img2vm', entrypointService: true })).not.toThrow();
    expect(() => planFor({ init: 'img2vm', password: 'x', hostname: 'h1', dns: ['192.0.2.1'] })).not.toThrow();
  });
});
