// plan(): options + facts about the image → the whole conversion as data (layout, file systems, loaders, the files
// img2vm writes into the guest, the output and the steps). Pure: the same inputs give the same plan.
import { resolve } from 'node:path';
import { BOOT_LOADERS } from './boot/index.js';
import { checkKernelCmdline, checkKernelVersion } from './boot/cmdline.js';
import { kernelCmdline } from './boot/grub-config.js';
import type { LoaderInput } from './boot/loader.js';
import { SYSTEMD_BOOT_ESP_SIZE } from './boot/systemd-boot.js';
import { Img2vmError } from './core/errors.js';
import { hostnameFromImage, type ConvertOptions } from './core/options.js';
import type { BootLoaderId, ConversionPlan, FileSystemPlan, GuestFile, GuestStrategyId, ImageFacts, PlanStep } from './core/plan.js';
import { createRandom, type Random } from './core/random.js';
import { alignUp, formatSize, MiB } from './core/units.js';
import { defaultFsSize, inodesFor, journalMiBFor, minimumFsSize, type ContentStats } from './disk/sizing.js';
import { partitionByRole, planLayout, type DiskLayout } from './disk/layout.js';
import { baseGuestFiles } from './guest/configure.js';
import { recipeFor } from './guest/distros.js';
import { GUEST_STRATEGIES } from './guest/index.js';
import { resolveFormat } from './output/index.js';
import { rootfsArtifacts } from './output/rootfs.js';
import type { OutputFormat } from './output/format.js';
import { parseDockerReference, parsePlatform, parseSourceRef } from './source/index.js';

/** Room the content gets beyond what flattening measured: GRUB's modules, img2vm's own files, a few new inodes. */
const SLACK_BLOCKS = 4096;
const SLACK_ENTRIES = 1000;

export interface PlanEnv {
  /** Every random choice comes from here; a run draws it from --seed or from one random seed of its own. */
  random: Random;
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
function checkStrategyOptions(o: ConvertOptions, id: GuestStrategyId): void {
  if (id === 'distro') return;
  // img2vm's init runs the entrypoint as a service itself; an image's own init gets nothing from img2vm.
  const service = id === 'image' && o.entrypointService && '--entrypoint-service';
  const distroOnly = [o.sshKey && '--ssh-key', o.user && '--user', o.cloudInit && '--cloud-init', service].filter(Boolean);
  if (distroOnly.length === 0) return;
  const why = id === 'img2vm' ? "img2vm's own init" : 'the image\'s own kernel and init (--init image)';
  throw new Img2vmError(
    'usage',
    `${distroOnly.join(', ')} install${distroOnly.length === 1 ? 's' : ''} packages from the distribution's template, which ${why} does not use`,
    id === 'img2vm' && o.init === 'auto' ? 'give --init distro (it needs a template for the distribution and a builder), or leave the option out' : 'give --init distro, or leave the option out',
  );
}

/**
 * --init auto: the distribution's own VM when img2vm has its template and a builder is available, img2vm's
 * kernel and init otherwise. Until the image has been read, distro is assumed.
 */
export function strategyFor(o: ConvertOptions, facts: ImageFacts = {}): GuestStrategyId {
  if (o.init !== 'auto') return o.init;
  if (facts.os === undefined) return 'distro';
  if (facts.os === null || !hasTemplate(facts)) return 'img2vm';
  if (facts.builders && !Object.values(facts.builders).some(Boolean)) return 'img2vm';
  return 'distro';
}

function hasTemplate(facts: ImageFacts): boolean {
  try {
    recipeFor(facts.os ?? undefined, undefined);
    return true;
  } catch {
    return false;
  }
}

export function loadersFor(o: ConvertOptions, direct: boolean): BootLoaderId[] {
  if (direct) return ['direct-kernel'];
  const bios = o.boot === 'bios' || o.boot === 'hybrid';
  const uefi = o.boot === 'uefi' || o.boot === 'hybrid';
  return [...(bios ? ['grub-bios' as const] : []), ...(uefi ? [o.bootloader === 'systemd-boot' ? ('systemd-boot' as const) : ('grub-efi' as const)] : [])];
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

/** Option combinations that cannot work (usage errors, before anything is read). */
export function checkOptions(o: ConvertOptions, format: OutputFormat): void {
  if (o.bootloader === 'systemd-boot') {
    if (format.directKernel) throw new Img2vmError('usage', '--bootloader does not apply to --format rootfs', 'the direct-kernel output has no boot loader; leave --bootloader out');
    if (o.boot !== 'uefi') {
      throw new Img2vmError('usage', `--bootloader systemd-boot boots UEFI only, not --boot ${o.boot}`, 'add --boot uefi, or keep GRUB (the default) for disks that also boot on BIOS');
    }
    if (o.bootPartition) {
      throw new Img2vmError('usage', '--boot-partition does not apply to systemd-boot', 'systemd-boot loads the kernel from the EFI system partition; leave --boot-partition out');
    }
  }
  if (o.platform) parsePlatform(o.platform);
  if (o.bootPartition && format.directKernel) {
    throw new Img2vmError('usage', '--boot-partition does not apply to --format rootfs', 'the direct-kernel output has no partitions; leave --boot-partition out');
  }
  if (o.push) {
    if (format.id !== 'containerdisk') throw new Img2vmError('usage', '--push applies only to --format containerdisk', 'add --format containerdisk, or leave --push out');
    if (parseDockerReference(o.push).digest) throw new Img2vmError('usage', `--push ${o.push}: a push needs a tag, not a digest`, 'give a reference like registry.example:5000/team/disk:1.0');
  }
  parseSourceRef(o.image);
}

export function plan(o: ConvertOptions, facts: ImageFacts, env: PlanEnv = { random: createRandom(o.seed) }): ConversionPlan {
  const pushOnly = o.output === undefined;
  const format = resolveFormat(o.output ?? '', o.format ?? (pushOnly ? 'containerdisk' : undefined));
  checkOptions(o, format);
  const direct = !!format.directKernel;
  const strategyId = strategyFor(o, facts);
  const strategy = GUEST_STRATEGIES[strategyId];
  checkStrategyOptions(o, strategyId);
  const guest = strategy.describe(o, facts);
  const loaders = loadersFor(o, direct);
  // Before anything is read: what the user adds to the kernel command line, as every loader here can carry it.
  const userCmdline = checkKernelCmdline(o.kernelCmdline, { grub: loaders.some((l) => l === 'grub-bios' || l === 'grub-efi') });
  const uefi = loaders.includes('grub-efi') || loaders.includes('systemd-boot');
  const ids = drawIds(env.random);
  const separateBoot = o.bootPartition !== undefined;
  const espUuid = uefi ? `${ids.esp.slice(0, 4)}-${ids.esp.slice(4)}` : undefined;
  const hostname = o.hostname ?? hostnameFromImage(o.image);
  const grubDir = direct ? null : separateBoot ? '/grub' : '/boot/grub';
  // img2vm's init shares the console with the workload's output: the kernel says only what is wrong.
  const extraArgs = [...(strategyId === 'img2vm' ? ['quiet'] : []), ...(userCmdline ? [userCmdline] : [])].join(' ') || undefined;
  const cmdline = direct ? null : kernelCmdline(ids.root, extraArgs);
  const kernel = facts.kernel ?? null;
  // The version names the kernel's files on the ESP and in boot entries; it comes from a file name in the image.
  if (kernel) checkKernelVersion(kernel.version);

  const li: LoaderInput = {
    rootUuid: ids.root,
    bootFsUuid: separateBoot ? ids.boot : ids.root,
    separateBoot,
    grubDir: grubDir ?? '/boot/grub',
    cmdline: cmdline ?? '',
    title: guest.distribution ?? 'Linux',
    osId: facts.os?.id,
    kernel,
  };
  const loaderFiles = loaders.map((id) => BOOT_LOADERS[id].files(li));
  const guestFiles = dedupe([
    ...baseGuestFiles({ rootUuid: ids.root, bootUuid: separateBoot ? ids.boot : undefined, espUuid, password: o.password !== undefined }, 'guest'),
    ...strategy.guestFiles(o, facts, hostname),
    ...loaderFiles.flatMap((l) => l.guestFiles),
  ]).map((f) => (separateBoot && f.fs === 'root' && f.path.startsWith('/boot/') && f.path !== '/boot/efi' ? { ...f, fs: 'boot' as const } : f));
  const exports = [...new Map(loaderFiles.flatMap((l) => l.exports).map((e) => [e.as, e])).values()];

  const { layout, filesystems } = sizeDisk(o, facts, { direct, loaders, ids, espUuid, random: env.random });
  const outPath = o.output !== undefined ? resolve(o.output) : null;
  const sideFiles = direct && outPath ? Object.values(rootfsArtifacts(outPath, !!kernel?.initrdPath)).filter((p): p is string => !!p && p !== outPath) : [];

  const unknown: string[] = [];
  if (!facts.source) unknown.push('source');
  if (facts.kernel === undefined) unknown.push('kernel');
  if (!facts.content) unknown.push('content');
  else if (facts.content.estimated) unknown.push('content (estimated)');

  return {
    image: o.image,
    rootUuid: ids.root,
    rootHashSeed: ids.rootHash,
    source: { transport: facts.source?.transport ?? parseSourceRef(o.image).transport, id: facts.source?.id ?? null, layers: facts.source?.layers ?? null },
    guest,
    content: facts.content ?? null,
    kernel,
    layout,
    sizing: o.size !== undefined ? 'fixed' : 'fitted',
    filesystems,
    boot: { mode: direct ? 'direct-kernel' : o.boot, loaders, cmdline, userCmdline: userCmdline ?? null, grubDir },
    hostname,
    guestFiles,
    exports,
    output: { format: format.id, path: outPath, compress: o.compress, push: o.push ?? null, sideFiles },
    steps: planSteps(o, { format: format.id, direct, strategy: strategyId, loaders, uefi, separateBoot, table: layout?.table ?? (o.partitionTable ?? (o.boot === 'bios' ? 'mbr' : 'gpt')) }),
    unknown,
  };
}

interface DiskInput {
  direct: boolean;
  loaders: BootLoaderId[];
  ids: ReturnType<typeof drawIds>;
  espUuid: string | undefined;
  random: Random;
}

/** Partitions and file systems from the content's size (or --size); nothing until the content is known. */
function sizeDisk(o: ConvertOptions, facts: ImageFacts, d: DiskInput): { layout: DiskLayout | null; filesystems: FileSystemPlan[] } {
  const c = facts.content;
  if (!c) return { layout: null, filesystems: [] };
  const content: ContentStats = { blocks4k: c.blocks4k + SLACK_BLOCKS, entries: c.entries + SLACK_ENTRIES };
  // The writer's own measure of the tree, once known, wins over the estimate from the counts.
  const minFs = Math.max(minimumFsSize(content), alignUp(c.minimumBytes ?? 0, MiB));
  const wantFs = o.size ? minFs : Math.max(defaultFsSize(content), minFs);
  const root = (offset: number, size: number): FileSystemPlan => ({
    role: 'root', type: 'ext4', label: 'root', uuid: d.ids.root, offset, size, inodes: inodesFor(content), journalMiB: journalMiBFor(size), hashSeed: d.ids.rootHash,
  });
  if (d.direct) {
    const fsSize = o.size ?? wantFs;
    if (fsSize < minFs) {
      throw new Img2vmError('sizeTooSmall', `--size ${formatSize(fsSize)} is too small: the image needs at least ${formatSize(minFs)}`, 'give a larger --size, or leave it out to fit the content');
    }
    return { layout: null, filesystems: [root(0, fsSize)] };
  }
  const bootUsage = c.boot ?? { blocks4k: 0, entries: 0 };
  if (o.bootPartition !== undefined && c.boot) {
    const minBoot = minimumFsSize(bootUsage);
    if (o.bootPartition < minBoot) {
      throw new Img2vmError('sizeTooSmall', `--boot-partition ${formatSize(o.bootPartition)} is too small: /boot needs at least ${formatSize(minBoot)}`, `give --boot-partition ${formatSize(minBoot)} or more`);
    }
  }
  const layout = planLayout({
    boot: o.boot,
    table: o.partitionTable,
    rootSize: wantFs,
    bootPartitionSize: o.bootPartition,
    diskSize: o.size,
    random: d.random.fork('layout'),
    espSize: d.loaders.includes('systemd-boot') ? SYSTEMD_BOOT_ESP_SIZE : undefined,
  });
  const rootPart = partitionByRole(layout, 'root')!;
  if (rootPart.size < minFs) {
    throw new Img2vmError('sizeTooSmall', `--size ${formatSize(o.size ?? 0)} is too small: the image needs at least ${formatSize(layout.diskSize - rootPart.size + minFs)}`, 'give a larger --size, or leave it out to fit the content');
  }
  const fss: FileSystemPlan[] = [];
  const esp = partitionByRole(layout, 'esp');
  if (esp && d.espUuid) fss.push({ role: 'esp', type: 'vfat', label: 'EFI', uuid: d.espUuid, offset: esp.start, size: esp.size });
  const boot = partitionByRole(layout, 'boot');
  if (boot) {
    fss.push({ role: 'boot', type: 'ext4', label: 'boot', uuid: d.ids.boot, offset: boot.start, size: boot.size, inodes: inodesFor(bootUsage), journalMiB: journalMiBFor(boot.size), hashSeed: d.ids.bootHash });
  }
  fss.push(root(rootPart.start, rootPart.size));
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

function planSteps(o: ConvertOptions, s: StepInput): PlanStep[] {
  const src = parseSourceRef(o.image);
  const steps: PlanStep[] = [
    { stage: 'source', id: src.transport, title: src.bare ? `Read image ${o.image} (the daemon's, else the registry's)` : `Read image ${o.image}` },
    { stage: 'guest', id: s.strategy, title: { distro: 'Install kernel and init', img2vm: "Fetch img2vm's kernel", image: "Keep the image's own kernel and init" }[s.strategy] },
    { stage: 'rootfs', id: 'flatten', title: 'Flatten layers into the root file system' },
    { stage: 'rootfs', id: 'configure', title: 'Write the guest configuration' },
    ...s.loaders.filter((id) => BOOT_LOADERS[id].prepare).map((id): PlanStep => ({ stage: 'rootfs', id, title: PREPARE_TITLES[id] })),
  ];
  if (s.direct) steps.push({ stage: 'disk', id: 'ext4', title: 'Format the root file system', target: 'root' });
  else {
    steps.push({ stage: 'disk', id: s.table, title: `Write the ${s.table.toUpperCase()} partition table` });
    if (s.uefi) steps.push({ stage: 'disk', id: 'vfat', title: 'Format the EFI system partition', target: 'esp' });
    if (s.separateBoot) steps.push({ stage: 'disk', id: 'ext4', title: 'Format /boot', target: 'boot' });
    steps.push({ stage: 'disk', id: 'ext4', title: 'Format the root file system', target: 'root' });
  }
  for (const id of s.loaders) if (BOOT_LOADERS[id].install) steps.push({ stage: 'boot', id, title: `Install ${BOOT_LOADERS[id].label}` });
  if (o.output !== undefined || !o.push) steps.push({ stage: 'output', id: s.format, title: `Write ${s.format} ${o.output ?? ''}`.trim() });
  else steps.push({ stage: 'output', id: s.format, title: `Make the ${s.format} in the work directory` });
  if (o.push) steps.push({ stage: 'output', id: 'push', title: `Push ${o.push}` });
  return steps;
}

