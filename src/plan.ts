// Planning: options + facts about the image → the whole conversion as data, in named phases (what the options
// decide; what the image decides; what the bootable tree decides; what the measured content decides). Pure: the
// same inputs give the same plan, and apply() calls each phase once, between the stages that learn its facts.
import { resolve } from 'node:path';
import { BOOT_LOADERS } from './boot/index.js';
import { checkKernelCmdline, checkKernelVersion } from './boot/cmdline.js';
import { kernelCmdline } from './boot/grub-config.js';
import type { LoaderInput } from './boot/loader.js';
import { SYSTEMD_BOOT_ESP_SIZE } from './boot/systemd-boot.js';
import { Img2vmError } from './core/errors.js';
import { hostnameFromImage, type ConvertOptions } from './core/options.js';
import type {
  LuksPlan,
  BootLoaderId,
  ContentFacts,
  ConversionPlan,
  FileSystemPlan,
  GuestFile,
  GuestStrategyId,
  ImageFacts,
  PlanInputs,
  PlanStep,
  TreeFacts,
} from './core/plan.js';
import { createRandom, type Random } from './core/random.js';
import { alignUp, formatSize, MiB } from './core/units.js';
import { defaultFsSize, inodesFor, journalMiBFor, minimumFsSize, withSlack } from './disk/sizing.js';
import { partitionByRole, planLayout, type DiskLayout } from './disk/layout.js';
import { ext4Shape } from './disk/ext4/index.js';
import { LUKS_DATA_OFFSET } from './disk/luks/header.js';
import { baseGuestFiles } from './guest/configure.js';
import { hasTemplate } from './guest/distros.js';
import { GUEST_STRATEGIES } from './guest/index.js';
import {
  checkStrategyArch,
  decideArch,
  type ArchDecision,
  distroPossible,
  hostArch,
  optionsForArch,
} from './guest/arch.js';
import type { GuestArch } from './core/arch.js';
import type { Known } from './guest/strategy.js';
import { resolveFormat } from './output/index.js';
import { rootfsArtifacts } from './output/rootfs.js';
import type { OutputFormat } from './output/format.js';
import { parseDockerReference, parsePlatform, parseSourceRef } from './source/index.js';

/**
 * The plan as known so far, and what it was made from. Each phase returns a new Planning with the facts it was
 * given; `plan` is the data a phase decided (printed by `img2vm plan`, carried out by apply()).
 */
export class Planning {
  private constructor(
    readonly options: ConvertOptions,
    private readonly known: Known,
    private readonly random: Random,
    readonly plan: ConversionPlan,
  ) {}

  /** Phase 1, what the options decide: loaders, ids, the command line, the output; nothing about the image yet. */
  static fromOptions(o: ConvertOptions, inputs: PlanInputs, random: Random = createRandom(o.seed)): Planning {
    const known: Known = { inputs };
    return new Planning(o, known, random, derive(o, known, random));
  }

  /** What phase 2 needs found out about the image: its distribution when the distro strategy may be used, and the builders for auto. */
  needs(): { os: boolean; builders: boolean } {
    return {
      os: this.options.init === 'auto' || this.options.init === 'distro',
      builders: this.options.init === 'auto',
    };
  }

  /** Phase 2, what the image decides: its config's process, its distribution, the builders (→ the guest strategy). */
  withImage(image: ImageFacts): Planning {
    return this.next({ ...this.known, image });
  }

  /** Phase 3, what the bootable tree decides: its kernel and userland (→ the guest files, the loaders' files). */
  withTree(tree: TreeFacts): Planning {
    return this.next({ ...this.known, tree });
  }

  /** Phase 4, what the measured content decides: sizes, partitions, file systems. */
  withContent(content: ContentFacts): Planning {
    return this.next({ ...this.known, content });
  }

  private next(known: Known): Planning {
    return new Planning(this.options, known, this.random, derive(this.options, known, this.random));
  }
}

/** Every phase at once, from whatever facts are known (tests, and the tools a conversion will need). */
export function plan(
  o: ConvertOptions,
  known: Known = { inputs: {} },
  random: Random = createRandom(o.seed),
): ConversionPlan {
  return derive(o, known, random);
}

/** The ids each part of the disk needs, drawn in a fixed order that no option changes (so a seed pins them all). */
function drawIds(random: Random): { root: string; boot: string; esp: string; rootHash: string; bootHash: string } {
  const r = random.fork('ids');
  const root = r.uuid();
  const boot = r.uuid();
  const esp = r.bytes(4).toString('hex').toUpperCase();
  return { root, boot, esp, rootHash: r.uuid(), bootHash: r.uuid() };
}

/** Options that install packages into the distribution need its template; say so instead of ignoring them. */
function checkStrategyOptions(o: ConvertOptions, id: GuestStrategyId, arch: ArchDecision, known: Known): void {
  checkStrategyArch(id, arch, o.init !== 'auto', known.inputs.binfmt);
  if (id === 'distro') return;
  // img2vm's init runs the entrypoint as a service itself; an image's own init gets nothing from img2vm.
  const service = id === 'image' && o.entrypointService && '--entrypoint-service';
  const distroOnly = [o.sshKey && '--ssh-key', o.user && '--user', o.cloudInit && '--cloud-init', service].filter(
    Boolean,
  );
  if (distroOnly.length === 0) return;
  const why = id === 'img2vm' ? "img2vm's own init" : "the image's own kernel and init (--init image)";
  throw new Img2vmError(
    'usage',
    `${distroOnly.join(', ')} install${distroOnly.length === 1 ? 's' : ''} packages from the distribution's template, which ${why} does not use`,
    id === 'img2vm' && o.init === 'auto'
      ? 'give --init distro (it needs a template for the distribution and a builder), or leave the option out'
      : 'give --init distro, or leave the option out',
  );
}

/**
 * --init auto: the distribution's own VM when img2vm has its template and a builder is available, img2vm's
 * kernel and init otherwise. Until the image has been read, distro is assumed.
 */
export function strategyFor(o: ConvertOptions, image?: ImageFacts, distroArch = true): GuestStrategyId {
  if (o.init !== 'auto') return o.init;
  if (!distroArch) return 'img2vm';
  if (image?.os === undefined) return 'distro';
  if (image.os === null || !hasTemplate(image.os, image.architecture)) return 'img2vm';
  if (image.builders && !Object.values(image.builders).some(Boolean)) return 'img2vm';
  return 'distro';
}

/** The loaders the options ask for (after optionsForArch made --boot what the architecture has). */
export function loadersFor(o: ConvertOptions, direct: boolean): BootLoaderId[] {
  if (direct) return ['direct-kernel'];
  const bios = o.boot === 'bios' || o.boot === 'hybrid';
  const uefi = o.boot === 'uefi' || o.boot === 'hybrid';
  return [
    ...(bios ? ['grub-bios' as const] : []),
    ...(uefi ? [o.bootloader === 'systemd-boot' ? ('systemd-boot' as const) : ('grub-efi' as const)] : []),
  ];
}

/** The same file asked for twice (both GRUBs write grub.cfg) is written once. */
function dedupe(files: GuestFile[]): GuestFile[] {
  const seen = new Set<string>();
  return files.filter((f) => {
    const k = `${f.fs}:${f.kind}:${f.path}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The output format the options ask for (a push alone makes a containerDisk). */
export function formatOf(o: ConvertOptions): OutputFormat {
  return resolveFormat(o.output ?? '', o.format ?? (o.output === undefined ? 'containerdisk' : undefined));
}

/** Option combinations that cannot work (usage errors, before anything is read). */
export function checkOptions(o: ConvertOptions, format: OutputFormat): void {
  if (o.bootloader === 'systemd-boot') {
    if (format.directKernel)
      throw new Img2vmError(
        'usage',
        '--bootloader does not apply to --format rootfs',
        'the direct-kernel output has no boot loader; leave --bootloader out',
      );
    if (o.boot !== 'uefi') {
      throw new Img2vmError(
        'usage',
        `--bootloader systemd-boot boots UEFI only, not --boot ${o.boot}`,
        'add --boot uefi, or keep GRUB (the default) for disks that also boot on BIOS',
      );
    }
    if (o.bootPartition) {
      throw new Img2vmError(
        'usage',
        '--boot-partition does not apply to systemd-boot',
        'systemd-boot loads the kernel from the EFI system partition; leave --boot-partition out',
      );
    }
  }
  if (o.platform) parsePlatform(o.platform);
  if (o.luks && format.directKernel) {
    throw new Img2vmError(
      'usage',
      '--luks-password does not apply to --format rootfs',
      'an encrypted root needs a partitioned disk: choose another --format, or leave the passphrase out',
    );
  }
  if (o.bootPartition && format.directKernel) {
    throw new Img2vmError(
      'usage',
      '--boot-partition does not apply to --format rootfs',
      'the direct-kernel output has no partitions; leave --boot-partition out',
    );
  }
  if (o.push) {
    if (format.directKernel)
      throw new Img2vmError(
        'usage',
        '--push does not apply to --format rootfs',
        'push a disk format (qcow2, raw, containerdisk, ...), or leave --push out',
      );
    if (parseDockerReference(o.push).digest)
      throw new Img2vmError(
        'usage',
        `--push ${o.push}: a push needs a tag, not a digest`,
        'give a reference like registry.example:5000/team/disk:1.0',
      );
  }
  parseSourceRef(o.image);
}

/**
 * Where the root file system starts: 0 for the direct-kernel output, else after the partitions before it, whose
 * sizes do not depend on the content (so file data can be written before the root's size is known). A --size too
 * small is refused once the content is measured, with the size it needs.
 */
function rootOffset(o: ConvertOptions, direct: boolean, loaders: BootLoaderId[], arch: GuestArch): number {
  if (direct) return 0;
  const luks = o.luks ? LUKS_DATA_OFFSET : 0;
  const probe = planLayout({
    boot: o.boot,
    table: o.partitionTable,
    rootSize: MiB,
    bootPartitionSize: o.bootPartition,
    random: createRandom('offsets'),
    arch,
    espSize: loaders.includes('systemd-boot') ? SYSTEMD_BOOT_ESP_SIZE : undefined,
  });
  return partitionByRole(probe, 'root')!.start + luks;
}

/**
 * The LUKS2 parameters: aes-xts-plain64 with a 512-bit key in 512-byte sectors (what every dm-crypt and initramfs
 * opens), PBKDF2-SHA256 for the keyslot (Node.js 20 has no Argon2). The UUID comes from the run's random (fixed by
 * --seed); the master key never does.
 */
function luksPlan(o: ConvertOptions, random: Random): LuksPlan | null {
  if (!o.luks) return null;
  return {
    uuid: random.fork('luks').uuid(),
    cipher: 'aes-xts-plain64',
    keyBytes: 64,
    sectorSize: 512,
    hash: 'sha256',
    pbkdf: 'pbkdf2',
    keyslotIterations: LUKS_KEYSLOT_ITERATIONS,
    digestIterations: LUKS_DIGEST_ITERATIONS,
    dataOffset: LUKS_DATA_OFFSET,
    masterKey: o.luksMasterKeyFile !== undefined ? 'file' : 'random',
  };
}

/**
 * img2vm's init shares the console with the workload's output: the kernel says only what is wrong. What unlocks a
 * LUKS2 root is the strategy's to say (img2vm's init learns the volume from its spec, so it says nothing).
 */
function extraArgsFor(
  strategy: GuestStrategyId,
  unlock: { args: string[] } | null,
  user: string | undefined,
): string | undefined {
  const args = [...(strategy === 'img2vm' ? ['quiet'] : []), ...(unlock?.args ?? []), ...(user ? [user] : [])];
  return args.join(' ') || undefined;
}

/**
 * 600,000 PBKDF2-SHA256 iterations for the passphrase (OWASP's 2023 figure, about 0.3 s on this machine's CPU);
 * the master key's digest guards a random 512-bit key, so cryptsetup's floor of 1000 is enough there.
 */
const LUKS_KEYSLOT_ITERATIONS = 600_000;
const LUKS_DIGEST_ITERATIONS = 1000;

/** The facts a plan made so far lacks (e.g. the kernel before the guest build ran). */
function unknownFacts(known: Known): string[] {
  const unknown: string[] = [];
  if (!known.image) unknown.push('source');
  if (!known.tree) unknown.push('kernel');
  else if (known.tree.estimated) unknown.push('kernel (estimated)');
  if (!known.content) unknown.push('content');
  else if (known.content.estimated) unknown.push('content (estimated)');
  return unknown;
}

/** Where the image comes from and how it is read. */
function sourcePlan(o: ConvertOptions, known: Known): ConversionPlan['source'] {
  return {
    transport: known.image?.source.transport ?? parseSourceRef(o.image).transport,
    id: known.image?.source.id ?? null,
    layers: known.image?.source.layers ?? null,
    pull: o.pull,
    platform: o.platform ?? null,
    insecureRegistries: o.insecureRegistries,
    verifyCache: o.verifyCache,
  };
}

/** The plan from the options and every fact known so far; the phases above call it with more facts each time. */
function derive(given: ConvertOptions, known: Known, random: Random): ConversionPlan {
  const format = formatOf(given);
  const direct = !!format.directKernel;
  const arch = decideArch(given, known.image, known.inputs.hostArchitecture ?? hostArch());
  const o = optionsForArch(given, arch);
  checkOptions(o, format);
  const strategyId = strategyFor(o, known.image, distroPossible(arch));
  const strategy = GUEST_STRATEGIES[strategyId];
  checkStrategyOptions(o, strategyId, arch, known);
  const guest = strategy.describe(o, known, arch);
  const loaders = loadersFor(o, direct);
  const userCmdline = checkKernelCmdline(o.kernelCmdline, {
    grub: loaders.some((l) => l === 'grub-bios' || l === 'grub-efi'),
  });
  const uefi = loaders.includes('grub-efi') || loaders.includes('systemd-boot');
  const ids = drawIds(random);
  const separateBoot = o.bootPartition !== undefined;
  const espUuid = uefi ? `${ids.esp.slice(0, 4)}-${ids.esp.slice(4)}` : undefined;
  const hostname = o.hostname ?? hostnameFromImage(o.image);
  const grubDir = direct ? null : separateBoot ? '/grub' : '/boot/grub';
  const luks = luksPlan(o, random);
  const unlock = luks ? (strategy.luksCmdline?.(known, luks.uuid) ?? null) : null;
  const extraArgs = extraArgsFor(strategyId, unlock, userCmdline);
  const cmdline = direct ? null : kernelCmdline(unlock?.root ?? `UUID=${ids.root}`, extraArgs, arch.arch);
  const kernel = known.tree?.kernel ?? null;
  if (kernel) checkKernelVersion(kernel.version);

  const li: LoaderInput = {
    rootUuid: ids.root,
    bootFsUuid: separateBoot ? ids.boot : ids.root,
    separateBoot,
    grubDir: grubDir ?? '/boot/grub',
    cmdline: cmdline ?? '',
    title: guest.distribution ?? 'Linux',
    osId: known.image?.os?.id,
    kernel,
    arch: arch.arch,
  };
  const loaderFiles = loaders.map((id) => BOOT_LOADERS[id].files(li));
  const guestFiles = dedupe([
    ...baseGuestFiles(
      {
        rootUuid: ids.root,
        bootUuid: separateBoot ? ids.boot : undefined,
        espUuid,
        password: o.password !== undefined,
      },
      'guest',
    ),
    ...strategy.guestFiles(o, known, hostname),
    ...loaderFiles.flatMap((l) => l.guestFiles),
  ]).map((f) => (separateBoot && f.fs === 'root' && f.path.startsWith('/boot/') ? { ...f, fs: 'boot' as const } : f));
  const exports = [...new Map(loaderFiles.flatMap((l) => l.exports).map((e) => [e.as, e])).values()];

  const content = known.content ?? null;
  const { layout, filesystems } = sizeDisk(o, content, { direct, loaders, ids, espUuid, random, arch: arch.arch });
  const outPath = o.output !== undefined ? resolve(o.output) : null;
  const sideFiles =
    direct && outPath
      ? Object.values(rootfsArtifacts(outPath, !!kernel?.initrdPath)).filter((p): p is string => !!p && p !== outPath)
      : [];

  return {
    image: o.image,
    architecture: { arch: arch.arch, from: arch.from },
    rootUuid: ids.root,
    rootHashSeed: ids.rootHash,
    source: sourcePlan(o, known),
    guest,
    content,
    kernel,
    disk: {
      rootOffset: rootOffset(o, direct, loaders, arch.arch),
      container: format.assembly.container,
      inPlace: format.assembly.inPlace,
    },
    layout,
    sizing: o.size !== undefined ? 'fixed' : 'fitted',
    filesystems,
    luks,
    boot: { mode: direct ? 'direct-kernel' : o.boot, loaders, cmdline, userCmdline: userCmdline ?? null, grubDir },
    hostname,
    guestFiles,
    exports,
    output: { format: format.id, path: outPath, compress: o.compress, push: o.push ?? null, sideFiles },
    steps: planSteps(o, {
      format: format.id,
      direct,
      strategy: strategyId,
      loaders,
      uefi,
      separateBoot,
      table: layout?.table ?? o.partitionTable ?? (o.boot === 'bios' ? 'mbr' : 'gpt'),
    }),
    unknown: unknownFacts(known),
  };
}

interface DiskInput {
  direct: boolean;
  loaders: BootLoaderId[];
  ids: ReturnType<typeof drawIds>;
  espUuid: string | undefined;
  random: Random;
  arch: GuestArch;
}

/** Partitions and file systems from the content's size (or --size); nothing until the content is known. */
function sizeDisk(
  o: ConvertOptions,
  c: ContentFacts | null,
  d: DiskInput,
): { layout: DiskLayout | null; filesystems: FileSystemPlan[] } {
  if (!c) return { layout: null, filesystems: [] };
  const content = withSlack(c);
  // The writer's own measure of the tree, once known, wins over the estimate from the counts.
  const minFs = Math.max(minimumFsSize(content), alignUp(c.minimumBytes ?? 0, MiB));
  const wantFs = o.size ? minFs : Math.max(defaultFsSize(content), minFs);
  const root = (offset: number, space: number): FileSystemPlan => {
    const fs = ext4Shape(space, inodesFor(content));
    return {
      role: 'root',
      type: 'ext4',
      label: 'root',
      uuid: d.ids.root,
      offset,
      size: fs.bytes,
      inodes: fs.inodes,
      journalMiB: journalMiBFor(fs.bytes),
      hashSeed: d.ids.rootHash,
    };
  };
  if (d.direct) {
    const fsSize = o.size ?? wantFs;
    if (fsSize < minFs) {
      throw new Img2vmError(
        'sizeTooSmall',
        `--size ${formatSize(fsSize)} is too small: the image needs at least ${formatSize(minFs)}`,
        'give a larger --size, or leave it out to fit the content',
      );
    }
    return { layout: null, filesystems: [root(0, fsSize)] };
  }
  const bootUsage = c.boot ?? { blocks4k: 0, entries: 0 };
  if (o.bootPartition !== undefined && c.boot) {
    const minBoot = minimumFsSize(bootUsage);
    if (o.bootPartition < minBoot) {
      throw new Img2vmError(
        'sizeTooSmall',
        `--boot-partition ${formatSize(o.bootPartition)} is too small: /boot needs at least ${formatSize(minBoot)}`,
        `give --boot-partition ${formatSize(minBoot)} or more`,
      );
    }
  }
  // With LUKS2 the root partition holds its header and keyslots before the file system.
  const header = o.luks ? LUKS_DATA_OFFSET : 0;
  const layout = planLayout({
    boot: o.boot,
    table: o.partitionTable,
    rootSize: wantFs + header,
    bootPartitionSize: o.bootPartition,
    diskSize: o.size,
    random: d.random.fork('layout'),
    arch: d.arch,
    espSize: d.loaders.includes('systemd-boot') ? SYSTEMD_BOOT_ESP_SIZE : undefined,
  });
  const rootPart = partitionByRole(layout, 'root')!;
  if (rootPart.size < minFs + header) {
    throw new Img2vmError(
      'sizeTooSmall',
      `--size ${formatSize(o.size ?? 0)} is too small: the image needs at least ${formatSize(layout.diskSize - rootPart.size + minFs + header)}`,
      'give a larger --size, or leave it out to fit the content',
    );
  }
  const fss: FileSystemPlan[] = [];
  const esp = partitionByRole(layout, 'esp');
  if (esp && d.espUuid)
    fss.push({ role: 'esp', type: 'vfat', label: 'EFI', uuid: d.espUuid, offset: esp.start, size: esp.size });
  const boot = partitionByRole(layout, 'boot');
  if (boot) {
    const fs = ext4Shape(boot.size, inodesFor(bootUsage));
    fss.push({
      role: 'boot',
      type: 'ext4',
      label: 'boot',
      uuid: d.ids.boot,
      offset: boot.start,
      size: fs.bytes,
      inodes: fs.inodes,
      journalMiB: journalMiBFor(fs.bytes),
      hashSeed: d.ids.bootHash,
    });
  }
  fss.push(root(rootPart.start + header, rootPart.size - header));
  return { layout, filesystems: fss };
}

const PREPARE_TITLES: Record<BootLoaderId, string> = {
  'grub-bios': 'Make the GRUB BIOS image',
  'grub-efi': 'Make the GRUB EFI image for the ESP',
  'systemd-boot': 'Take the systemd-boot binary for the ESP',
  'direct-kernel': 'Unpack the kernel for microVM runners (vmlinux)',
};

interface StepInput {
  format: string;
  direct: boolean;
  strategy: GuestStrategyId;
  loaders: BootLoaderId[];
  uefi: boolean;
  separateBoot: boolean;
  table: string;
}

/** The steps as the user is shown them (and as IMG2VM_TEST_HOOK names them: STAGE/ID). */
function planSteps(o: ConvertOptions, s: StepInput): PlanStep[] {
  const src = parseSourceRef(o.image);
  const steps: PlanStep[] = [
    {
      stage: 'source',
      id: src.transport,
      title: src.bare ? `Read image ${o.image} (the daemon's, else the registry's)` : `Read image ${o.image}`,
    },
    {
      stage: 'guest',
      id: s.strategy,
      title: {
        distro: 'Install kernel and init',
        img2vm: "Fetch img2vm's kernel",
        image: "Keep the image's own kernel and init",
      }[s.strategy],
    },
    { stage: 'rootfs', id: 'flatten', title: 'Flatten layers into the root file system' },
    { stage: 'rootfs', id: 'configure', title: 'Write the guest configuration' },
    ...s.loaders
      .filter((id) => BOOT_LOADERS[id].prepare)
      .map((id): PlanStep => ({ stage: 'rootfs', id, title: PREPARE_TITLES[id] })),
  ];
  if (s.direct) steps.push({ stage: 'disk', id: 'ext4', title: 'Format the root file system', target: 'root' });
  else {
    steps.push({ stage: 'disk', id: s.table, title: `Write the ${s.table.toUpperCase()} partition table` });
    if (s.uefi) steps.push({ stage: 'disk', id: 'vfat', title: 'Format the EFI system partition', target: 'esp' });
    if (s.separateBoot) steps.push({ stage: 'disk', id: 'ext4', title: 'Format /boot', target: 'boot' });
    steps.push({ stage: 'disk', id: 'ext4', title: 'Format the root file system', target: 'root' });
  }
  for (const id of s.loaders)
    if (BOOT_LOADERS[id].install) steps.push({ stage: 'boot', id, title: `Install ${BOOT_LOADERS[id].label}` });
  if (o.output !== undefined || !o.push)
    steps.push({ stage: 'output', id: s.format, title: `Write ${s.format} ${o.output ?? ''}`.trim() });
  else steps.push({ stage: 'output', id: s.format, title: `Make the ${s.format} in the work directory` });
  if (o.push) steps.push({ stage: 'output', id: 'push', title: `Push ${o.push}` });
  if (o.cacheTo) steps.push({ stage: 'output', id: 'cache-to', title: `Push the disk to the cache ${o.cacheTo}` });
  return steps;
}

export type { Known };
export { hasTemplate };
export type { TreeFacts };
