// --init img2vm: img2vm's own kernel (Debian's cloud kernel by default) and init, for any image — scratch,
// distroless, any distribution — with nothing installed into it and no builder or daemon.
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { ConversionRun } from '../core/conversion.js';
import type { ConvertOptions } from '../core/options.js';
import { progress } from '../core/events.js';
import type { GuestFile, ImageFacts } from '../core/plan.js';
import { run } from '../tools/index.js';
import { img2vmInitramfsEntries, writeInitramfs, type InitModule } from './initramfs.js';
import { archiveOptions, getKernel, parseKernelSource, resolveModules, type ModuleFile } from '../kernel/index.js';
import { passwordEdit } from './configure.js';
import { recipeFor } from './distros.js';
import type { GuestStrategy } from './strategy.js';
import { decideInit, type InitDecision } from './workload.js';

/** Where the kernel and initramfs go in the root file system, beside (never over) a distribution's own /boot. */
export const IMG2VM_BOOT_DIR = '/boot/img2vm';
/** Work-directory name of the initramfs the configure step writes into the guest. */
const INITRD_WORK_NAME = 'img2vm-initrd.img';

/**
 * What the root disk and the network need on virtio (QEMU, cloud-hypervisor), SCSI and NVMe disks, and virtio-mmio
 * (Firecracker); built-ins are skipped, so the list serves Debian 12's kernel (virtio as modules) and 13's alike.
 */
const WANTED_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'sd_mod', 'nvme', 'ext4', 'virtio_net', 'virtio_mmio'];

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
async function initramfsModules(r: ConversionRun, files: ModuleFile[], decompresses: boolean): Promise<InitModule[]> {
  const out: InitModule[] = [];
  for (const m of files) {
    if (!m.compressed || decompresses) {
      out.push({ name: basename(m.path), content: { path: m.path } });
      continue;
    }
    const plain = join(r.ctx.work, 'modules', `${m.name}.ko`);
    await mkdir(dirname(plain), { recursive: true });
    if (m.compressed === 'gzip') await writeFile(plain, gunzipSync(await readFile(m.path)));
    else {
      // The tools decompress in place: a copy under the work directory, named as they expect.
      const packed = `${plain}.${m.compressed === 'xz' ? 'xz' : 'zst'}`;
      await copyFile(m.path, packed);
      await run(m.compressed === 'xz' ? 'xz' : 'zstd', m.compressed === 'xz' ? ['-d', '-q', packed] : ['-d', '-q', '--rm', packed], { signal: r.ctx.signal });
    }
    out.push({ name: `${m.name}.ko`, content: { path: plain } });
  }
  return out;
}

/** What the init will run; the plan and the spec both take it from here, so they cannot disagree. */
function decisionOf(o: ConvertOptions, facts: ImageFacts): InitDecision | undefined {
  if (!facts.process) return undefined;
  return decideInit(facts.process, o.password !== undefined, facts.userland, o.entrypointService);
}

function init(o: ConvertOptions, facts: ImageFacts): NonNullable<ReturnType<GuestStrategy['describe']>['init']> | undefined {
  const d = decisionOf(o, facts);
  if (!d) return undefined;
  return { ...d, kernel: facts.kernelBundle ? `${facts.kernelBundle.version} (${facts.kernelBundle.origin})` : null };
}

/** For `img2vm plan`: the kernel img2vm would boot, if it is in the cache already (nothing is fetched). */
export async function cachedKernel(r: ConversionRun): Promise<void> {
  try {
    const k = await getKernel(parseKernelSource(r.options.kernel, { modulesDir: r.options.kernelModules }), r.ctx, { ...archiveOptions(r.options), offline: true, docker: r.docker() });
    recordKernel(r, k);
  } catch {
    // not cached (or not reachable offline): the plan says the kernel is not known yet
  }
}

function recordKernel(r: ConversionRun, k: { version: string; vmlinuz: string; modulesDir?: string; config?: string; origin: string; id: string }): void {
  r.facts.kernelBundle = { version: k.version, vmlinuz: k.vmlinuz, modulesDir: k.modulesDir, config: k.config, origin: k.origin, id: k.id };
  const p = img2vmKernelPaths(k.version);
  r.facts.kernel = { version: k.version, kernelPath: p.kernel, initrdPath: p.initrd, kernelFile: p.kernel, initrdFile: p.initrd };
  r.replan();
}

export const img2vmStrategy: GuestStrategy = {
  id: 'img2vm',
  kernelFromImage: false,
  describe: (o, facts) => ({
    strategy: 'img2vm',
    reason: o.init === 'img2vm' ? "--init img2vm: img2vm's own kernel and init" : autoReason(facts),
    distribution: facts.os?.prettyName ?? facts.os?.id ?? null,
    template: null,
    builder: null,
    cached: null,
    init: init(o, facts),
  }),
  guestFiles(o, facts) {
    const k = facts.kernelBundle;
    const pw = passwordEdit(o.password !== undefined, 'img2vm');
    if (!k) return [...pw, { kind: 'file', path: `${IMG2VM_BOOT_DIR}/`, fs: 'root', note: "img2vm's kernel and initramfs, once the kernel is fetched", by: 'img2vm' }];
    const p = img2vmKernelPaths(k.version);
    const files: GuestFile[] = [
      ...pw,
      { kind: 'file', path: p.kernel, fs: 'root', mode: 0o644, from: k.vmlinuz, note: k.origin, by: 'img2vm' },
      { kind: 'file', path: p.initrd, fs: 'root', mode: 0o644, from: `work:${INITRD_WORK_NAME}`, note: "img2vm's init, its spec and the disk and network modules", by: 'img2vm' },
    ];
    // An image that loads modules itself (udev, modprobe) finds the rest of the kernel's where it looks.
    if (facts.userland?.modprobe && k.modulesDir) {
      files.push({ kind: 'copy', path: `/lib/modules/${k.version}`, fs: 'root', from: k.modulesDir, filter: '**', note: `the modules of ${k.version}`, by: 'img2vm' });
    }
    return files;
  },
  noKernelHint: '',
  tools: [],
  async apply(r) {
    const o = r.options;
    const spec = parseKernelSource(o.kernel, { modulesDir: o.kernelModules });
    const bar = progress(r.ctx.sink, 'guest', 'bytes', undefined, 'kernel package');
    const k = await getKernel(spec, r.ctx, {
      ...archiveOptions(o),
      docker: r.docker(),
      source: { pull: o.pull, insecureRegistries: o.insecureRegistries },
      onProgress: (done, total) => {
        bar.setTotal(total);
        bar.set(done);
      },
    });
    bar.end();
    recordKernel(r, k);
    return `kernel ${k.version} (${k.origin})`;
  },
  /** The initramfs: img2vm's init, the spec of what it runs, and the modules the root disk and network need. */
  async beforeConfigure(r) {
    const k = r.facts.kernelBundle!;
    const decision = decisionOf(r.options, r.facts)!;
    const modules = await initramfsModules(r, resolveModules(k, WANTED_MODULES, { missing: 'skip' }), kernelDecompresses(k.config));
    const proc = r.facts.process!;
    const entries = img2vmInitramfsEntries(
      {
        mode: decision.mode,
        root: { uuid: r.plan.rootUuid, fsType: 'ext4' },
        argv: decision.argv,
        ...(decision.service ? { service: decision.service } : {}),
        env: proc.env,
        cwd: decision.cwd,
        user: decision.user,
        hostname: r.plan.hostname,
        login: decision.login,
        network: 'auto',
        ...(r.options.dns ? { dns: r.options.dns.flatMap((d) => d.split(',')).map((d) => d.trim()).filter(Boolean) } : {}),
      },
      modules,
    );
    const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? 0);
    await writeFile(join(r.ctx.work, INITRD_WORK_NAME), await writeInitramfs(entries, { mtime: epoch }));
  },
};

function autoReason(facts: ImageFacts): string {
  if (facts.os === null) return 'auto: the image has no /etc/os-release (no distribution to install into)';
  if (facts.os && !hasTemplate(facts.os)) return `auto: img2vm has no template for ${facts.os.prettyName ?? facts.os.id}`;
  return 'auto: no builder is available to install the distribution (docker, runc, podman)';
}

function hasTemplate(os: NonNullable<ImageFacts['os']>): boolean {
  try {
    recipeFor(os, undefined);
    return true;
  } catch {
    return false;
  }
}
