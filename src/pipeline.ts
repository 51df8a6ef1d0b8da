// The conversion pipeline: source → guest → rootfs → disk → boot → output, with every resource owned by the scope.
import { access, constants, cp, lstat, mkdir, writeFile, chmod, mkdtemp, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import type { RunContext } from './core/context.js';
import { ConvertOptionsSchema, hostnameFromImage, type ConvertOptionsInput, type ConvertOptions } from './core/config.js';
import { Img2vmError } from './core/errors.js';
import { nullSink, stage, type EventSink, type StageId } from './core/events.js';
import { createRandom } from './core/random.js';
import { Scope } from './core/scope.js';
import { formatSize } from './core/units.js';
import { installGrubBios, stageGrubBiosFiles } from './boot/grub-bios.js';
import { kernelCmdline, renderGrubCfg } from './boot/grub-config.js';
import { defaultFsSize, inodesFor, journalMiBFor, makeExt4, minimumFsSize } from './disk/ext4.js';
import { planLayout, partitionByRole, type DiskLayout } from './disk/layout.js';
import { writePartitionTable } from './disk/table.js';
import { configureGuest, findKernel, resolveInRoot, writeInRoot, type KernelInfo } from './guest/configure.js';
import { stageGrubEfiFiles, installGrubEfi } from './boot/grub-efi.js';
import { makeFat } from './disk/fat.js';
import { treeUsage } from './rootfs/usage.js';
import { detectOs } from './guest/detect.js';
import { recipeFor } from './guest/distros.js';
import { dockerBuild } from './guest/docker-builder.js';
import { resolveFormat } from './output/index.js';
import type { OutputFormat } from './output/format.js';
import { containerDiskQcow2, makeContainerDiskQcow2, pushContainerDisk } from './output/containerdisk.js';
import { parseDockerReference } from './source/reference.js';
import { extractVmlinux } from './boot/vmlinux.js';
import { configureKernelInstall, findSystemdBootEfi, installSystemdBoot, renderBlsEntry, renderLoaderConf, SYSTEMD_BOOT_ESP_SIZE } from './boot/systemd-boot.js';
import { cloudHypervisorScript, firecrackerConfig, rootfsArtifacts } from './output/rootfs.js';
import { RootfsBuilder, type FlattenStats } from './rootfs/flatten.js';
import { DockerClient } from './source/docker-api.js';
import { importToDaemon, openDaemonImage, openSource, parsePlatform, parseSourceRef } from './source/index.js';
import type { SourceImage } from './source/image.js';
import { preflight, type ToolName } from './tools/index.js';

export const STAGES: { id: StageId; title: string }[] = [
  { id: 'source', title: 'Read image' },
  { id: 'guest', title: 'Install kernel and init' },
  { id: 'rootfs', title: 'Flatten layers' },
  { id: 'disk', title: 'Partition and format' },
  { id: 'boot', title: 'Install bootloader' },
  { id: 'output', title: 'Write output' },
];

export interface ConvertResult {
  /** null when a containerDisk was only pushed (--push without -o). */
  output: string | null;
  format: string;
  bootMode: string;
  /** null for the direct-kernel output, which has none. */
  bootloader: string | null;
  partitionTable: string;
  /** Virtual disk size in bytes. */
  diskSize: number;
  /** Bytes the output file takes on disk (with --push alone: the pushed qcow2). */
  fileSize: number;
  rootfs: { bytes: number; files: number; entries: number; fsSize: number; uuid: string };
  partitions: { role: string; start: number; size: number }[];
  kernelVersion: string | null;
  distribution: string | null;
  guestBuildCached: boolean | null;
  /** The daemon image the guest stage built (img2vm-cache:...), null with --raw. */
  guestImage: string | null;
  /** Set when --push pushed the containerDisk image. */
  pushed?: { ref: string; digest: string };
  timings: Partial<Record<StageId, number>> & { total: number };
}

export interface ConvertHooks {
  sink?: EventSink;
  signal?: AbortSignal;
  /** Supplied by the CLI so a SIGINT can release resources; created here otherwise. */
  scope?: Scope;
}

/** Checks what can be checked before any work: the output directory, tools, format. */
async function preflightConvert(o: ConvertOptions, format: OutputFormat): Promise<void> {
  if (o.output !== undefined) await preflightOutput(o.output);
  if (o.bootloader === 'systemd-boot') {
    if (format.directKernel) throw new Img2vmError('usage', '--bootloader does not apply to --format rootfs', 'the direct-kernel output has no boot loader; leave --bootloader out');
    if (o.boot !== 'uefi') {
      throw new Img2vmError('usage', `--bootloader systemd-boot boots UEFI only, not --boot ${o.boot}`, 'add --boot uefi, or keep GRUB (the default) for disks that also boot on BIOS');
    }
    if (o.bootPartition) {
      throw new Img2vmError('usage', '--boot-partition does not apply to systemd-boot', 'systemd-boot loads the kernel from the EFI system partition; leave --boot-partition out');
    }
  }
  const tools: ToolName[] = ['mke2fs', 'setfattr'];
  if (o.bootloader === 'grub') tools.push('grub-mkimage');
  if (o.boot !== 'bios') tools.push('mkfs.fat', 'mmd', 'mcopy');
  if (format.id !== 'raw') tools.push('qemu-img');
  preflight(tools);
  if (o.platform) parsePlatform(o.platform);
  if (o.bootPartition && format.directKernel) {
    throw new Img2vmError('usage', '--boot-partition does not apply to --format rootfs', 'the direct-kernel output has no partitions; leave --boot-partition out');
  }
  if (o.push) {
    if (format.id !== 'containerdisk') throw new Img2vmError('usage', '--push applies only to --format containerdisk', 'add --format containerdisk, or leave --push out');
    if (parseDockerReference(o.push).digest) throw new Img2vmError('usage', `--push ${o.push}: a push needs a tag, not a digest`, 'give a reference like registry.example:5000/team/disk:1.0');
  }
  if (process.getuid?.() !== 0) {
    throw new Img2vmError(
      'usage',
      'img2vm must run as root for now: the root file system is staged with real owners, devices and security xattrs',
      'run it with sudo; unprivileged assembly is planned',
    );
  }
}

async function preflightOutput(output: string): Promise<void> {
  const out = resolve(output);
  const dir = dirname(out);
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new Img2vmError('outputNotWritable', `output directory ${dir} does not exist`, `create it first: mkdir -p ${dir}`);
  }
  try {
    await access(dir, constants.W_OK);
  } catch {
    throw new Img2vmError('outputNotWritable', `output directory ${dir} is not writable`, 'choose another -o path, or fix its permissions');
  }
  const ost = await stat(out).catch(() => undefined);
  if (ost?.isDirectory()) throw new Img2vmError('outputNotWritable', `output ${out} is a directory`, 'give a file name, e.g. -o disk.qcow2');
}

export async function convert(input: ConvertOptionsInput, hooks: ConvertHooks = {}): Promise<ConvertResult> {
  const parsed = ConvertOptionsSchema.safeParse(input);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; ');
    throw new Img2vmError('usage', `invalid options: ${msg}`, 'see img2vm --help');
  }
  const o = parsed.data;
  const sink = hooks.sink ?? nullSink;
  const ac = new AbortController();
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, ac.signal]) : ac.signal;
  const scope = hooks.scope ?? new Scope();
  const ownScope = !hooks.scope;
  const t0 = performance.now();
  const timings: Partial<Record<StageId, number>> = {};
  if (o.output === undefined) {
    if (!o.push) throw new Img2vmError('usage', 'no output given', 'add -o FILE, e.g. -o disk.qcow2 (only a pushed containerDisk needs no file: --push REGISTRY/REPO:TAG)');
    // --push alone: the containerDisk goes to the registry and nowhere else.
    o.format ??= 'containerdisk';
  }
  const format = resolveFormat(o.output ?? '', o.format);
  await preflightConvert(o, format);
  parseSourceRef(o.image);

  const work = await mkdtemp(join(process.env.TMPDIR || tmpdir(), 'img2vm-'));
  scope.defer(`remove ${work}`, () => rm(work, { recursive: true, force: true }));
  const ctx: RunContext = { work, signal, sink, scope, random: createRandom(o.seed) };
  try {
    return await runPipeline(o, format, ctx, timings, t0);
  } finally {
    if (ownScope) await scope.close();
  }
}

async function runPipeline(
  o: ConvertOptions,
  format: ReturnType<typeof resolveFormat>,
  ctx: RunContext,
  timings: Partial<Record<StageId, number>>,
  t0: number,
): Promise<ConvertResult> {
  const { sink, signal } = ctx;
  const docker = new DockerClient(undefined, signal);
  const sourceOptions = { pull: o.pull, platform: o.platform, insecureRegistries: o.insecureRegistries };
  let pushed: { ref: string; digest: string } | undefined;

  // 1. source — unpacked into its own directory, so it can be freed once the guest build replaces it
  const sourceWork = await mkdtemp(join(ctx.work, 'source-'));
  let img: SourceImage = await stage(sink, 'source', `Read image ${o.image}`, timings, () => openSource(o.image, { ...ctx, work: sourceWork }, docker, sourceOptions), (i) => `${i.layers.length} layer${i.layers.length === 1 ? '' : 's'}, ${i.id.slice(0, 19)}`);

  // 2. guest: build kernel + init on top of the image (cached), then read the built image instead
  let distribution: string | null = null;
  let osId: string | undefined;
  let cached: boolean | null = null;
  let guestImage: string | null = null;
  if (o.raw) {
    sink({ type: 'stage-skip', stage: 'guest', reason: '--raw: the image brings its own kernel and init' });
  } else {
    img = await stage(sink, 'guest', 'Install kernel and init', timings, async () => {
      try {
        await docker.ping();
      } catch (e) {
        throw new Img2vmError(
          'daemonUnreachable',
          `installing a kernel and init needs a builder, and the docker builder's daemon is not reachable at ${docker.endpoint.socketPath}`,
          'start dockerd (dockerd --bridge=none &), or pass --raw if the image already has a kernel and init',
          { cause: e },
        );
      }
      const os = await detectOs(img, signal);
      osId = os?.id;
      let recipe = recipeFor(os, img.config.architecture);
      if (o.bootloader === 'systemd-boot') {
        // The guest's own systemd-boot: bootctl and the kernel-install hooks keep the ESP current on upgrades.
        recipe = { ...recipe, values: { ...recipe.values, extra_packages: [recipe.values.extra_packages, 'systemd-boot'].filter(Boolean).join(' ') } };
      }
      distribution = recipe.label;
      // Images from registries and archives are loaded into the daemon (unchanged, same id) to build on.
      const base = img.daemonId ?? (await importToDaemon(img, docker, ctx));
      const built = await dockerBuild(docker, base, recipe, ctx);
      cached = built.cached;
      guestImage = built.tag;
      const dir = await mkdtemp(join(ctx.work, 'built-'));
      const out = await openDaemonImage(docker, built.tag, o.image, dir);
      // The built image holds the base layers too: the source's copy would only double the disk used.
      await rm(sourceWork, { recursive: true, force: true });
      return out;
    }, () => (cached ? 'cached' : 'built'));
  }

  // 3. rootfs: flatten every layer into the staging tree, then write the guest's configuration
  const staging = join(ctx.work, 'rootfs');
  await mkdir(staging, { mode: 0o755 });
  let stats!: FlattenStats;
  let kernel!: KernelInfo;
  const direct = !!format.directKernel;
  const bios = !direct && (o.boot === 'bios' || o.boot === 'hybrid');
  const uefi = !direct && (o.boot === 'uefi' || o.boot === 'hybrid');
  const sdboot = uefi && o.bootloader === 'systemd-boot';
  const rootUuid = ctx.random.uuid();
  const bootUuid = o.bootPartition ? ctx.random.uuid() : undefined;
  const espId = uefi ? ctx.random.bytes(4).toString('hex').toUpperCase() : undefined;
  const bootFsUuid = bootUuid ?? rootUuid;
  // GRUB paths are relative to the file system that holds /boot.
  const grubDir = bootUuid ? '/grub' : '/boot/grub';
  const hostname = o.hostname ?? hostnameFromImage(o.image);
  const bootStaging = join(ctx.work, 'bootfs');
  let bootUsage = { blocks4k: 0, entries: 0 };
  await stage(sink, 'rootfs', 'Flatten layers', timings, async () => {
    const b = new RootfsBuilder(staging, { signal, onWarning: (m) => sink({ type: 'log', level: 'warn', stage: 'rootfs', message: m }) });
    for (const layer of img.layers) await b.applyLayer(await layer.open());
    stats = await b.finish();
    const k = await findKernel(staging);
    if (!k) {
      throw new Img2vmError('badImage', 'the image has no kernel in /boot', o.raw ? 'drop --raw so img2vm installs a kernel, or add one to the image' : 'the guest build did not install a kernel; see -v output');
    }
    kernel = k;
    await configureGuest(staging, {
      rootUuid,
      bootUuid,
      espUuid: espId ? `${espId.slice(0, 4)}-${espId.slice(4)}` : undefined,
      hostname,
      password: o.password,
      random: ctx.random,
      epochSeconds: Number(process.env.SOURCE_DATE_EPOCH ?? Math.floor(Date.now() / 1000)),
      raw: o.raw,
    });
    if (direct || sdboot) {
      // A microVM runner loads kernel and initrd from the host, systemd-boot from the ESP: copy them out before the
      // tree is turned into ext4.
      await copyRegularFile(await resolveInRoot(staging, `boot/vmlinuz-${kernel.version}`, true), join(ctx.work, 'vmlinuz'));
      if (kernel.initrdPath) await copyRegularFile(await resolveInRoot(staging, `boot/initrd.img-${kernel.version}`, true), join(ctx.work, 'initrd.img'));
    }
    if (direct) {
      const vmlinux = await extractVmlinux(await readFile(join(ctx.work, 'vmlinuz')), ctx.work, signal);
      await writeFile(join(ctx.work, 'vmlinux'), vmlinux.elf);
      if (!vmlinux.pvh) {
        sink({ type: 'log', level: 'warn', stage: 'rootfs', message: `kernel ${kernel.version} has no PVH entry note: Firecracker can boot its vmlinux, cloud-hypervisor cannot` });
      }
      return stats;
    }
    if (sdboot) {
      // The ESP gets the kernel and initrd (systemd-boot reads nothing else); the guest's kernel-install learns the layout.
      const cmdline = kernelCmdline(rootUuid, o.kernelCmdline);
      await configureKernelInstall(staging, cmdline);
      await cp(await findSystemdBootEfi(staging), join(ctx.work, 'systemd-bootx64.efi'));
      await writeFile(join(ctx.work, 'loader.conf'), renderLoaderConf());
      await writeFile(join(ctx.work, 'bls-entry.conf'), renderBlsEntry({ title: distribution ?? 'Linux', kernelVersion: kernel.version, cmdline, hasInitrd: !!kernel.initrdPath, sortKey: osId }));
      return stats;
    }
    if (bios) await stageGrubBiosFiles(staging);
    if (uefi) await stageGrubEfiFiles(staging);
    const onBootFs = (p: string) => (bootUuid ? p.replace(/^\/boot\//, '/') : p);
    const versioned = { kernelPath: `/boot/vmlinuz-${kernel.version}`, initrdPath: kernel.initrdPath && `/boot/initrd.img-${kernel.version}` };
    // The /vmlinuz links live on the root file system, which GRUB does not see when /boot is separate.
    const paths = bootUuid ? versioned : kernel;
    await writeInRoot(staging, 'boot/grub/grub.cfg', renderGrubCfg({
      title: distribution ?? 'Linux',
      kernel: onBootFs(paths.kernelPath),
      initrd: paths.initrdPath && onBootFs(paths.initrdPath),
      cmdline: kernelCmdline(rootUuid, o.kernelCmdline),
    }));
    if (bootUuid) {
      // /boot becomes its own file system: move its content aside and leave an empty mount point.
      // /boot may be a symlink in the image: move the real directory it names (inside the root), never the link.
      const bootDir = await resolveInRoot(staging, 'boot', true);
      if (bootDir === staging || !(await lstat(bootDir)).isDirectory()) {
        throw new Img2vmError('badImage', "the image's /boot is not a directory of its own", 'convert without --boot-partition');
      }
      await rename(bootDir, bootStaging);
      const mountPoint = join(staging, 'boot');
      await rm(mountPoint, { force: true, recursive: true });
      await mkdir(mountPoint, { mode: 0o755 });
      bootUsage = await treeUsage(bootStaging);
    }
    return stats;
  }, (s) => `${s.files} files, ${formatSize(s.bytes)}`);

  // 4. disk: layout, partition table, file systems written at their offsets
  const content = { blocks4k: stats.blocks4k + 4096 /* GRUB modules and config */, entries: stats.files + stats.dirs + stats.symlinks + stats.specials + 1000 };
  const minFs = minimumFsSize(content);
  const wantFs = o.size ? minFs : defaultFsSize(content);
  const minBoot = bootUuid ? minimumFsSize(bootUsage) : 0;
  if (o.bootPartition && o.bootPartition < minBoot) {
    throw new Img2vmError('sizeTooSmall', `--boot-partition ${formatSize(o.bootPartition)} is too small: /boot needs at least ${formatSize(minBoot)}`, `give --boot-partition ${formatSize(minBoot)} or more`);
  }
  // Without -o (--push alone) nothing is written outside the work directory.
  const outPath = o.output !== undefined ? resolve(o.output) : undefined;
  const tmpOut = outPath ? join(dirname(outPath), `.${basename(outPath)}.img2vm-${process.pid}.tmp`) : join(ctx.work, 'output.tmp');
  const removeTmpOut = () => rm(tmpOut, { force: true });
  ctx.scope.defer(`remove ${tmpOut}`, removeTmpOut);
  const rawPath = format.isRaw ? tmpOut : join(ctx.work, 'disk.raw');
  let layout: DiskLayout | undefined;
  if (direct) {
    const fsSize = o.size ?? wantFs;
    if (fsSize < minFs) {
      throw new Img2vmError('sizeTooSmall', `--size ${formatSize(fsSize)} is too small: the image needs at least ${formatSize(minFs)}`, 'give a larger --size, or leave it out to fit the content');
    }
    await stage(sink, 'disk', 'Format the root file system', timings, async () => {
      const fh = await open(rawPath, 'w');
      await fh.truncate(fsSize).finally(() => fh.close());
      await makeExt4({ image: rawPath, offset: 0, size: fsSize, uuid: rootUuid, label: 'root', inodes: inodesFor(content), journalMiB: journalMiBFor(fsSize), source: staging, hashSeed: ctx.random.seeded ? ctx.random.uuid() : undefined }, ctx);
      await rm(staging, { recursive: true, force: true });
    }, () => `ext4, ${formatSize(fsSize)}`);
    sink({ type: 'stage-skip', stage: 'boot', reason: 'direct-kernel output: the VM runner loads the kernel' });
    await stage(sink, 'output', `Write ${o.output} with kernel, initrd and runner configs`, timings, () =>
      writeDirectKernel(outPath!, tmpOut, ctx, { cmdline: o.kernelCmdline, initrd: !!kernel.initrdPath }),
    );
    ctx.scope.release(removeTmpOut);
  } else await stage(sink, 'disk', 'Partition and format', timings, async () => {
    layout = planLayout({
      boot: o.boot, table: o.partitionTable, rootSize: wantFs, bootPartitionSize: o.bootPartition, diskSize: o.size, random: ctx.random,
      espSize: sdboot ? SYSTEMD_BOOT_ESP_SIZE : undefined,
    });
    const root = partitionByRole(layout, 'root')!;
    if (root.size < minFs) {
      throw new Img2vmError('sizeTooSmall', `--size ${formatSize(o.size ?? 0)} is too small: the image needs at least ${formatSize(layout.diskSize - root.size + minFs)}`, 'give a larger --size, or leave it out to fit the content');
    }
    const fh = await open(rawPath, 'w');
    try {
      await fh.truncate(layout.diskSize);
      await writePartitionTable(fh.fd, layout);
    } finally {
      await fh.close();
    }
    const esp = partitionByRole(layout, 'esp');
    if (esp && espId) await makeFat({ image: rawPath, offset: esp.start, size: esp.size, volumeId: espId, label: 'EFI' }, ctx);
    const bootPart = partitionByRole(layout, 'boot');
    if (bootPart && bootUuid) {
      await makeExt4({
        image: rawPath, offset: bootPart.start, size: bootPart.size, uuid: bootUuid, label: 'boot',
        inodes: inodesFor(bootUsage), journalMiB: journalMiBFor(bootPart.size), source: bootStaging,
        hashSeed: ctx.random.seeded ? ctx.random.uuid() : undefined,
      }, ctx);
    }
    await makeExt4({
      image: rawPath,
      offset: root.start,
      size: root.size,
      uuid: rootUuid,
      label: 'root',
      inodes: inodesFor(content),
      journalMiB: journalMiBFor(root.size),
      source: staging,
      hashSeed: ctx.random.seeded ? ctx.random.uuid() : undefined,
    }, ctx);
    // The staging trees are no longer needed; free their space before the output is written.
    await rm(staging, { recursive: true, force: true });
    await rm(bootStaging, { recursive: true, force: true });
    return layout;
  }, (l) => `${l.table.toUpperCase()}, ${formatSize(l.diskSize)}`);

  if (layout) await bootAndOutput(layout);
  async function bootAndOutput(l: DiskLayout) {
  // 5. boot
  const loaders = [bios && 'GRUB BIOS', uefi && (sdboot ? 'systemd-boot' : 'GRUB EFI')].filter(Boolean).join(' + ');
  await stage(sink, 'boot', `Install bootloader (${loaders})`, timings, async () => {
    if (bios) await installGrubBios(rawPath, l, bootFsUuid, grubDir, ctx);
    const esp = partitionByRole(l, 'esp');
    if (sdboot && esp) {
      await installSystemdBoot(rawPath, esp.start, kernel.version, {
        efi: join(ctx.work, 'systemd-bootx64.efi'), kernel: join(ctx.work, 'vmlinuz'), initrd: kernel.initrdPath ? join(ctx.work, 'initrd.img') : undefined,
        loaderConf: join(ctx.work, 'loader.conf'), entry: join(ctx.work, 'bls-entry.conf'),
      }, ctx);
    } else if (uefi && esp) await installGrubEfi(rawPath, esp.start, bootFsUuid, grubDir, ctx);
  });

  // 6. output
  if (!outPath) await stage(sink, 'output', `Push ${format.id} ${o.push}`, timings, async () => {
    const qcow2 = await makeContainerDiskQcow2(rawPath, ctx, o.compress);
    pushed = await pushContainerDisk(qcow2, o.push!, ctx, { insecureRegistries: o.insecureRegistries });
  });
  else await stage(sink, 'output', `Write ${format.id} ${o.output}`, timings, async () => {
    await format.write(rawPath, tmpOut, ctx, { compress: o.compress });
    // Pushed before the rename, so a failed push leaves no output file.
    if (o.push) pushed = await pushContainerDisk(containerDiskQcow2(ctx), o.push, ctx, { insecureRegistries: o.insecureRegistries });
    await rename(tmpOut, outPath);
    ctx.scope.release(removeTmpOut);
  });
  }
  const st = await stat(outPath ?? containerDiskQcow2(ctx));
  return {
    output: outPath ?? null,
    format: format.id,
    bootMode: direct ? 'direct-kernel' : o.boot,
    bootloader: direct ? null : sdboot ? 'systemd-boot' : 'grub',
    partitionTable: layout?.table ?? 'none',
    diskSize: layout?.diskSize ?? st.size,
    fileSize: st.blocks * 512,
    rootfs: { bytes: stats.bytes, files: stats.files, entries: content.entries, fsSize: layout ? partitionByRole(layout, 'root')!.size : st.size, uuid: rootUuid },
    partitions: (layout?.partitions ?? []).map((p) => ({ role: p.role, start: p.start, size: p.size })),
    kernelVersion: kernel.version,
    distribution,
    guestBuildCached: cached,
    guestImage,
    ...(pushed ? { pushed } : {}),
    timings: { ...timings, total: Math.round(performance.now() - t0) },
  };
}


/** Moves NAME.ext4 into place and writes kernel, initrd and the runner configs beside it, each via a temp name. */
async function writeDirectKernel(outPath: string, tmpOut: string, ctx: RunContext, o: { cmdline?: string; initrd: boolean }): Promise<void> {
  const a = rootfsArtifacts(outPath, o.initrd);
  const vm = { mem: 1024, cpus: 2, cmdline: o.cmdline };
  const files: [string, () => Promise<void>, number][] = [
    [a.kernel, () => cp(join(ctx.work, 'vmlinuz'), `${a.kernel}.tmp`), 0o644],
    [a.vmlinux, () => cp(join(ctx.work, 'vmlinux'), `${a.vmlinux}.tmp`), 0o644],
    ...(a.initrd ? [[a.initrd, () => cp(join(ctx.work, 'initrd.img'), `${a.initrd}.tmp`), 0o644] as [string, () => Promise<void>, number]] : []),
    [a.firecracker, () => writeFile(`${a.firecracker}.tmp`, firecrackerConfig(a, vm)), 0o644],
    [a.cloudHypervisor, () => writeFile(`${a.cloudHypervisor}.tmp`, cloudHypervisorScript(a, vm)), 0o755],
  ];
  for (const [dest, make, mode] of files) {
    ctx.scope.defer(`remove ${dest}.tmp`, () => rm(`${dest}.tmp`, { force: true }));
    await make();
    await chmod(`${dest}.tmp`, mode);
  }
  for (const [dest] of files) await rename(`${dest}.tmp`, dest);
  await rename(tmpOut, outPath);
}

/** Copies a file taken from the image; anything but a regular file (a fifo would block) is refused. */
async function copyRegularFile(src: string, dest: string): Promise<void> {
  const st = await lstat(src).catch(() => undefined);
  if (!st?.isFile()) throw new Img2vmError('badImage', `${basename(src)} in the image is not a regular file`, 'the image\'s /boot is damaged');
  await cp(src, dest);
}
