// The rootfs steps: flatten the layers into the staged root, then write the planned guest files and copy out
// what the boot stage needs from it (kernel, initrd) before the tree becomes a file system.
import { lstatSync } from 'node:fs';
import { copyFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import type { ConversionRun, StepFn } from '../core/conversion.js';
import { Img2vmError } from '../core/errors.js';
import { progress } from '../core/events.js';
import type { Userland } from '../core/plan.js';
import { formatSize } from '../core/units.js';
import { epochSeconds } from '../core/epoch.js';
import { applyGuestFiles, findKernel, hasResolved } from '../guest/configure.js';
import { GUEST_STRATEGIES } from '../guest/index.js';
import { RootfsBuilder } from './flatten.js';
import { moveDirOutOfRoot, resolveInRoot } from './inroot.js';
import { treeUsage } from './usage.js';

/** Counts the bytes of each layer blob as the flattener reads it, for the progress bar. */
function counted(stream: NodeJS.ReadableStream, add: (n: number) => void): NodeJS.ReadableStream {
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      add(chunk.length);
      cb(null, chunk);
    },
  });
  stream.on('error', (e) => t.destroy(e));
  return stream.pipe(t);
}

const flatten: StepFn = async (r) => {
  const img = r.image!;
  const sizes = img.layers.map((l) => l.size);
  const total = sizes.every((s) => s !== undefined) ? sizes.reduce((a, b) => a! + b!, 0) : undefined;
  const p = progress(r.ctx.sink, 'rootfs', 'bytes', total, `${img.layers.length} layer${img.layers.length === 1 ? '' : 's'}`);
  const b = new RootfsBuilder(r.staging, { signal: r.ctx.signal, onWarning: (m) => r.ctx.sink({ type: 'log', level: 'warn', stage: 'rootfs', message: m }) });
  for (const layer of img.layers) await b.applyLayer(counted(await layer.open(), (n) => p.add(n)));
  p.end();
  const stats = await b.finish();
  r.facts.content = { blocks4k: stats.blocks4k, entries: stats.files + stats.dirs + stats.symlinks + stats.specials, bytes: stats.bytes, files: stats.files };
  const strategy = GUEST_STRATEGIES[r.plan.guest.strategy];
  if (strategy.kernelFromImage) {
    const kernel = await findKernel(r.staging);
    if (!kernel) throw new Img2vmError('badImage', 'the image has no kernel in /boot', strategy.noKernelHint);
    r.facts.kernel = kernel;
  }
  r.facts.hasResolved = hasResolved(r.staging);
  r.facts.userland = probeUserland(r.staging);
  r.replan();
  return `${stats.files} files, ${formatSize(stats.bytes)}`;
};

/** What the image's userland offers img2vm's init: a console login, module loading, a shell. */
export function probeUserland(root: string): Userland {
  const has = (...paths: string[]) => paths.find((p) => {
    try {
      return lstatSync(resolveInRoot(root, p, true)).isFile();
    } catch {
      return false;
    }
  });
  return {
    login: !!has('sbin/agetty', 'usr/sbin/agetty', 'sbin/getty', 'usr/sbin/getty') && !!has('bin/login', 'usr/bin/login'),
    modprobe: !!has('sbin/modprobe', 'usr/sbin/modprobe', 'bin/modprobe', 'usr/bin/modprobe', 'bin/kmod', 'usr/bin/kmod'),
    shell: has('bin/bash', 'bin/sh') ? `/${has('bin/bash', 'bin/sh')}` : null,
  };
}

/** Copies a file taken from the image; anything but a regular file (a fifo would block) is refused. */
async function exportFile(r: ConversionRun, path: string, as: string, optional: boolean): Promise<void> {
  const src = resolveInRoot(r.staging, path.replace(/^\/+/, ''), true);
  const st = await lstat(src).catch(() => undefined);
  if (!st?.isFile()) {
    if (optional) return;
    throw new Img2vmError('badImage', `${path} in the image is not a regular file`, "the image's /boot is damaged");
  }
  const dest = join(r.ctx.work, as);
  await copyFile(src, dest);
  r.exported.set(as, dest);
}

const configure: StepFn = async (r) => {
  const strategy = GUEST_STRATEGIES[r.plan.guest.strategy];
  await strategy.beforeConfigure?.(r);
  const secrets = { password: r.options.password, random: r.ctx.random.fork('password'), epochSeconds: epochSeconds(), workDir: r.ctx.work };
  applyGuestFiles(r.staging, r.plan.guestFiles, secrets, (f) => strategy.edit?.(r, f));
  for (const e of r.plan.exports) await exportFile(r, e.path, e.as, !!e.optional);
  if (r.options.bootPartition !== undefined) {
    // /boot becomes its own file system: its content moves aside and an empty mount point stays.
    moveDirOutOfRoot(r.staging, 'boot', r.bootStaging);
    r.facts.content = { ...r.facts.content!, boot: await treeUsage(r.bootStaging) };
    r.replan();
  }
  const n = r.plan.guestFiles.filter((f) => f.fs !== 'esp').length;
  return `${n} file${n === 1 ? '' : 's'}`;
};

export const ROOTFS_STEPS: Record<string, StepFn> = { flatten, configure };
