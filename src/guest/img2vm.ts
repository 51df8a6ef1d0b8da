// --init img2vm: img2vm's own kernel (Debian's cloud kernel by default) and init, for any image — scratch,
// distroless, any distribution — with nothing installed into it and no builder or daemon.
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Env } from '../core/context.js';
import type { ConvertOptions } from '../core/options.js';
import { progress } from '../core/events.js';
import type { ConversionPlan, GuestFile, ImageFacts, TreeFacts } from '../core/plan.js';
import { DockerClient } from '../source/docker-api.js';
import { run } from '../tools/index.js';
import { checkInitArch, img2vmInitramfsEntries, nativeInitPath, writeInitramfs, type InitModule } from './initramfs.js';
import {
  checkKernelArch,
  getKernel,
  parseKernelSource,
  resolveModules,
  type KernelBundle,
  type ModuleFile,
} from '../kernel/index.js';
import { passwordEdit } from './configure.js';
import { hostArch } from './arch.js';
import { hasTemplate } from './distros.js';
import type { GuestStrategy, Known } from './strategy.js';
import { decideInit, type InitDecision } from './workload.js';

/** Where the kernel and initramfs go in the root file system, beside (never over) a distribution's own /boot. */
export const IMG2VM_BOOT_DIR = '/boot/img2vm';
/** Work-directory name of the initramfs the configure step writes into the guest. */
const INITRD_WORK_NAME = 'img2vm-initrd.img';

/**
 * What the root disk and the network need on virtio (QEMU, cloud-hypervisor), SCSI and NVMe disks, and virtio-mmio
 * (Firecracker); built-ins are skipped, so the list serves Debian 12's kernel (virtio as modules) and 13's alike.
 */
const WANTED_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_scsi',
  'sd_mod',
  'nvme',
  'ext4',
  'virtio_net',
  'virtio_mmio',
];

/**
 * What unlocking a LUKS2 root needs (only with --luks-password): device-mapper and its crypt target, and the xts
 * template over AES that dm-crypt asks the crypto API for (the initramfs has no modprobe to load it on demand).
 * The init decrypts the keyslot itself, so no AF_ALG; AES itself is built into Debian's kernels.
 */
const LUKS_MODULES = ['dm_mod', 'dm_crypt', 'xts'];
/**
 * The CPU's AES instructions, when the kernel has them as modules: faster dm-crypt, skipped where the kernel lacks
 * them, and optional in the guest, whose CPU may lack the instructions (the generic AES then serves).
 */
const LUKS_FAST_AES = ['aesni_intel', 'aes_ce_blk'];

/**
 * The modules img2vm's initramfs loads, in load order: the disk and network ones, and with LUKS dm-crypt's; the
 * CPU-specific AES ones and what only they need are optional.
 */
export function initModuleFiles(
  k: { modulesDir?: string; version: string; origin?: string },
  luks: boolean,
): (ModuleFile & { optional?: boolean })[] {
  const files = [
    ...resolveModules(k, WANTED_MODULES, { missing: 'skip' }),
    ...(luks ? resolveModules(k, LUKS_MODULES) : []),
    ...(luks ? resolveModules(k, LUKS_FAST_AES, { missing: 'skip' }).map((m) => ({ ...m, optional: true })) : []),
  ];
  return files.filter((m, i) => files.findIndex((o) => o.name === m.name) === i);
}

export function img2vmKernelPaths(version: string): { kernel: string; initrd: string } {
  return { kernel: `${IMG2VM_BOOT_DIR}/vmlinuz-${version}`, initrd: `${IMG2VM_BOOT_DIR}/initrd.img-${version}` };
}

/** Whether the kernel decompresses modules itself (CONFIG_MODULE_DECOMPRESS); unknown kernels get plain .ko files. */
function kernelDecompresses(config: string | undefined): boolean {
  if (!config) return false;
  try {
    return /^CONFIG_MODULE_DECOMPRESS=y$/m.test(readFileSync(config, 'utf8'));
  } catch {
    return false;
  }
}

/** The modules for the initramfs, decompressed in the work directory when the kernel cannot do it itself. */
async function initramfsModules(
  env: Env,
  files: (ModuleFile & { optional?: boolean })[],
  decompresses: boolean,
): Promise<InitModule[]> {
  const out: InitModule[] = [];
  for (const m of files) {
    const optional = m.optional ? { optional: true } : {};
    if (!m.compressed || decompresses) {
      out.push({ name: basename(m.path), content: { path: m.path }, ...optional });
      continue;
    }
    const plain = join(env.work, 'modules', `${m.name}.ko`);
    await mkdir(dirname(plain), { recursive: true });
    if (m.compressed === 'gzip') await writeFile(plain, gunzipSync(await readFile(m.path)));
    else {
      // The tools decompress in place: a copy under the work directory, named as they expect.
      const packed = `${plain}.${m.compressed === 'xz' ? 'xz' : 'zst'}`;
      await copyFile(m.path, packed);
      await run(
        m.compressed === 'xz' ? 'xz' : 'zstd',
        m.compressed === 'xz' ? ['-d', '-q', packed] : ['-d', '-q', '--rm', packed],
        { signal: env.signal },
      );
    }
    out.push({ name: `${m.name}.ko`, content: { path: plain }, ...optional });
  }
  return out;
}

/** --dns values: repeated and/or comma lists. */
function dnsList(dns: string[] | undefined): string[] | undefined {
  return dns
    ? dns
        .flatMap((d) => d.split(','))
        .map((d) => d.trim())
        .filter(Boolean)
    : undefined;
}

/** What the init will run; the plan and the spec both take it from here, so they cannot disagree. */
function decisionOf(o: ConvertOptions, known: Known): InitDecision | undefined {
  if (!known.image) return undefined;
  return decideInit(known.image.process, o.password !== undefined, known.tree?.userland, o.entrypointService);
}

function init(o: ConvertOptions, known: Known): NonNullable<ConversionPlan['guest']['init']> | undefined {
  const d = decisionOf(o, known);
  if (!d) return undefined;
  const k = known.tree?.kernelBundle;
  const dns = dnsList(o.dns);
  return {
    ...d,
    // `img2vm run IMAGE COMMAND` puts COMMAND after the image's ENTRYPOINT, as docker run does.
    entrypoint: known.image!.process.entrypoint,
    kernel: k ? `${k.version} (${k.origin})` : null,
    ...(dns ? { dns } : {}),
  };
}

/** The kernel img2vm boots, as the tree facts and the plan carry it. */
export function bundleFacts(k: KernelBundle): NonNullable<TreeFacts['kernelBundle']> {
  return {
    version: k.version,
    vmlinuz: k.vmlinuz,
    modulesDir: k.modulesDir,
    config: k.config,
    origin: k.origin,
    id: k.id,
  };
}

/** Where img2vm's kernel and initramfs are in the guest, as the loaders boot them. */
export function img2vmKernelFacts(version: string): NonNullable<TreeFacts['kernel']> {
  const p = img2vmKernelPaths(version);
  return { version, kernelPath: p.kernel, initrdPath: p.initrd, kernelFile: p.kernel, initrdFile: p.initrd };
}

export const img2vmStrategy: GuestStrategy = {
  id: 'img2vm',
  kernelFromImage: false,
  describe: (o, known) => ({
    strategy: 'img2vm',
    reason:
      o.init === 'img2vm'
        ? "--init img2vm: img2vm's own kernel and init"
        : autoReason(known.image, known.inputs.hostArchitecture ?? hostArch()),
    distribution: known.image?.os?.prettyName ?? known.image?.os?.id ?? null,
    template: null,
    builder: null,
    cached: null,
    kernelSource: {
      spec: o.kernel ?? null,
      modulesDir: o.kernelModules ?? null,
      mirror: o.kernelMirror ?? null,
      security: !o.kernelNoSecurity,
    },
    init: init(o, known),
  }),
  guestFiles(o, known) {
    const k = known.tree?.kernelBundle;
    const pw = passwordEdit(o.password !== undefined, 'img2vm');
    if (!k)
      return [
        ...pw,
        {
          kind: 'file',
          path: `${IMG2VM_BOOT_DIR}/`,
          fs: 'root',
          note: "img2vm's kernel and initramfs, once the kernel is fetched",
          by: 'img2vm',
        },
      ];
    const p = img2vmKernelPaths(k.version);
    const files: GuestFile[] = [
      ...pw,
      { kind: 'file', path: p.kernel, fs: 'root', mode: 0o644, from: k.vmlinuz, note: k.origin, by: 'img2vm' },
      {
        kind: 'file',
        path: p.initrd,
        fs: 'root',
        mode: 0o644,
        from: `work:${INITRD_WORK_NAME}`,
        note: `img2vm's init, its spec and the disk and network modules${o.luks ? ", and dm-crypt's to unlock the LUKS2 root" : ''}`,
        by: 'img2vm',
      },
    ];
    // An image that loads modules itself (udev, modprobe) finds the rest of the kernel's where it looks.
    if (known.tree?.userland?.modprobe && k.modulesDir) {
      files.push({
        kind: 'copy',
        path: `/lib/modules/${k.version}`,
        fs: 'root',
        from: k.modulesDir,
        filter: '**',
        note: `the modules of ${k.version}`,
        by: 'img2vm',
      });
    }
    return files;
  },
  noKernelHint: '',
  tools: [],
  /** The kernel: fetched and verified (or from the cache); with lookupOnly only from the cache, never the network. */
  async make(plan, image, env, { lookupOnly, peek }) {
    const ks = plan.guest.kernelSource;
    if (!ks) throw new Error('the img2vm strategy was planned without a kernel source');
    const spec = parseKernelSource(ks.spec ?? undefined, { modulesDir: ks.modulesDir ?? undefined });
    const arch = plan.architecture.arch;
    const archive = { arch, mirror: ks.mirror ?? undefined, ...(ks.security ? {} : { securityMirror: null }) };
    const what = ks.spec ? `--kernel ${ks.spec}` : "Debian's cloud kernel";
    const docker = new DockerClient(undefined, env.signal);
    if (lookupOnly) {
      // Not cached (or not reachable offline): the plan says the kernel is not known yet.
      const k = await getKernel(spec, env, { ...archive, offline: true, docker }).catch(() => undefined);
      if (!k) return undefined;
      await checkKernelArch(k.vmlinuz, arch, what);
      return { image, kernel: k, detail: `kernel ${k.version} (${k.origin})` };
    }
    const bar = progress(env.sink, 'guest', 'bytes', undefined, 'kernel package');
    const k = await getKernel(spec, env, {
      ...archive,
      ...(peek ? { peek } : {}),
      docker,
      // A kernel image of several platforms gives the guest's architecture's kernel.
      source: { pull: plan.source.pull, insecureRegistries: plan.source.insecureRegistries, platform: `linux/${arch}` },
      onProgress: (done, total) => {
        bar.setTotal(total);
        bar.set(done);
      },
    });
    bar.end();
    await checkKernelArch(k.vmlinuz, arch, what);
    return { image, kernel: k, detail: `kernel ${k.version} (${k.origin})` };
  },
  /** The initramfs: img2vm's init, the spec of what it runs, and the modules the root disk and network need. */
  async workFiles(plan, made, env) {
    const k = made.kernel;
    const init = plan.guest.init;
    if (!k || !init) throw new Error('the initramfs needs the kernel and the init decision');
    const proc = made.image.config.config;
    const initPath = nativeInitPath(plan.architecture.arch);
    if (existsSync(initPath)) checkInitArch(initPath, plan.architecture.arch);
    const luks = plan.luks;
    const modules = await initramfsModules(env, initModuleFiles(k, luks !== null), kernelDecompresses(k.config));
    const entries = img2vmInitramfsEntries(
      {
        mode: init.mode,
        root: { uuid: plan.rootUuid, fsType: 'ext4', ...(luks ? { luksUuid: luks.uuid } : {}) },
        argv: init.argv,
        ...(init.service ? { service: init.service } : {}),
        env: proc?.Env ?? [],
        cwd: init.cwd,
        user: init.user,
        hostname: plan.hostname,
        login: init.login,
        network: 'auto',
        ...(init.dns ? { dns: init.dns } : {}),
      },
      modules,
      { path: initPath },
    );
    await writeFile(join(env.work, INITRD_WORK_NAME), await writeInitramfs(entries, { mtime: env.fixedEpoch }));
  },
};

function autoReason(image: ImageFacts | undefined, host: string): string {
  if (image?.os === null) return 'auto: the image has no /etc/os-release (no distribution to install into)';
  if (image?.os && !hasTemplate(image.os, image.architecture))
    return `auto: img2vm has no template for ${image.os.prettyName ?? image.os.id} on linux/${image.architecture}`;
  if (image && image.architecture !== host)
    return `auto: the image is linux/${image.architecture} and this host linux/${host}: a distribution build would run the image's programs under emulation, which takes many minutes (give --init distro for it; img2vm's own init runs none of them)`;
  return 'auto: no builder is available to install the distribution (docker, runc, podman)';
}
