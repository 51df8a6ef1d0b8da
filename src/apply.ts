// apply(): runs a plan's steps through the registries of step implementations, stage by stage, and renames the
// output into place only when every step succeeded.
import { rename } from 'node:fs/promises';
import { basename, dirname, relative, resolve } from 'node:path';
import { asWriteError, freeBytes, isNoSpace, isReadOnly } from './core/no-space.js';
import { cacheDir } from './core/paths.js';
import { formatSize } from './core/units.js';
import { BOOT_LOADERS } from './boot/index.js';
import type { ConversionRun, StepFn, StepRegistry } from './core/conversion.js';
import type { StageId } from './core/events.js';
import type { BootLoaderId, BuilderId, PlanStep } from './core/plan.js';
import { AUTO_ORDER, BUILDERS } from './build/index.js';
import { detectOs } from './guest/detect.js';
import { processOf } from './guest/workload.js';
import { DISK_STEPS } from './disk/steps.js';
import { GUEST_STRATEGIES } from './guest/index.js';
import { FORMATS } from './output/index.js';
import { SINKS } from './output/push.js';
import { ROOTFS_STEPS } from './rootfs/steps.js';
import { openSource } from './source/index.js';
import { TRANSPORTS } from './source/transports/index.js';
import { diskFile } from './output/target.js';
import { testHook } from './core/test-hook.js';

const sourceStep: StepFn = async (r) => {
  const o = r.options;
  const img = await openSource(o.image, r.ctx, r.docker(), { pull: o.pull, platform: o.platform, insecureRegistries: o.insecureRegistries });
  r.image = img;
  r.facts.source = { transport: img.transport ?? 'docker-daemon', id: img.id, layers: img.layers.length, daemonId: img.daemonId };
  r.facts.process = processOf(img.config.config);
  if (o.init === 'auto') await learnForAuto(r);
  r.replan();
  return `${img.layers.length} layer${img.layers.length === 1 ? '' : 's'}, ${img.id.slice(0, 19)}`;
};

/** What --init auto decides by: the distribution (os-release) and whether a builder answers. */
async function learnForAuto(r: ConversionRun): Promise<void> {
  const os = await detectOs(r.image!, r.ctx.signal);
  r.facts.os = os ?? null;
  const builders: Partial<Record<BuilderId, boolean>> = {};
  for (const id of AUTO_ORDER) builders[id] = (await BUILDERS[id].available(r)).ok;
  r.facts.builders = builders;
}

const outputStep: StepFn = async (r, step) => {
  const format = FORMATS.find((f) => f.id === step.id)!;
  // The disk is complete: a qcow2 target writes its tables now, a raw one is flushed and closed.
  r.target?.close();
  const artifact = await format.write({ raw: diskFile(r), dest: r.tmpOut, ctx: r.ctx, plan: r.plan, files: r.exported, commits: r.commits });
  if (artifact) r.artifact = artifact;
  if (r.outPath) r.commits.push([r.tmpOut, r.outPath]);
};

/** Every step implementation by stage and id: adding a transport, strategy, loader or format registers it here. */
export const STEPS: StepRegistry = {
  source: Object.fromEntries(Object.keys(TRANSPORTS).map((id) => [id, sourceStep])),
  guest: Object.fromEntries(Object.values(GUEST_STRATEGIES).map((s) => [s.id, (r: ConversionRun) => s.apply(r)])),
  rootfs: {
    ...ROOTFS_STEPS,
    ...Object.fromEntries(Object.values(BOOT_LOADERS).flatMap((l) => (l.prepare ? [[l.id, async (r: ConversionRun) => void (await l.prepare!(r))]] : []))),
  },
  disk: DISK_STEPS,
  boot: Object.fromEntries(Object.values(BOOT_LOADERS).flatMap((l) => (l.install ? [[l.id, async (r: ConversionRun) => void (await l.install!(r))]] : []))),
  output: {
    ...Object.fromEntries(FORMATS.map((f) => [f.id, outputStep])),
    ...Object.fromEntries(Object.values(SINKS).map((s) => [s.id, (r: ConversionRun) => s.run(r)])),
  },
};

export function stepFn(step: PlanStep): StepFn {
  const fn = STEPS[step.stage]?.[step.id];
  if (!fn) throw new Error(`no implementation registered for step ${step.stage}:${step.id}`);
  return fn;
}

/** The line a stage shows: one step's own title, or what the stage does as a whole. */
function stageTitle(stage: StageId, steps: PlanStep[]): string {
  if (steps.length === 1) return steps[0]!.title;
  if (stage === 'boot') return `Install bootloader (${steps.map((s) => BOOT_LOADERS[s.id as BootLoaderId].label).join(' + ')})`;
  if (stage === 'disk') return 'Partition and format';
  if (stage === 'rootfs') return 'Flatten layers and write the guest configuration';
  return steps.map((s) => s.title).join(', ');
}

const STAGE_ORDER: StageId[] = ['source', 'guest', 'rootfs', 'disk', 'boot', 'output'];
const SKIPPED: Partial<Record<StageId, string>> = {
  boot: 'no boot code to write: the EFI system partition holds the boot loader',
};

/** Runs every step of run.plan in order; the stages are timed into timings. */
export async function apply(r: ConversionRun, timings: Partial<Record<StageId, number>>): Promise<void> {
  const { sink, signal } = r.ctx;
  for (const stage of STAGE_ORDER) {
    // Read the steps anew for each stage: what an earlier stage learnt (--init auto's choice) may change them.
    const steps = r.plan.steps.filter((s) => s.stage === stage);
    if (steps.length === 0) {
      sink({ type: 'stage-skip', stage, reason: SKIPPED[stage] ?? 'nothing to do for this conversion' });
      continue;
    }
    signal.throwIfAborted();
    if (stage === 'guest' && steps.every((s) => s.id === 'image')) {
      await runStep(r, steps[0]!);
      sink({ type: 'stage-skip', stage, reason: r.plan.guest.reason });
      continue;
    }
    sink({ type: 'stage-start', stage, title: stageTitle(stage, steps) });
    const t0 = performance.now();
    const details: string[] = [];
    for (const step of steps) {
      signal.throwIfAborted();
      const d = await runStep(r, step);
      if (d) details.push(d);
    }
    const ms = Math.round(performance.now() - t0);
    timings[stage] = (timings[stage] ?? 0) + ms;
    sink({ type: 'stage-end', stage, ms, detail: details.join(', ') || undefined });
  }
  await testHook('before', 'output/rename');
  signal.throwIfAborted();
  // Side files first, the output last: a disk that is in place always has its companions. From the first
  // rename on the run is complete: a signal now can only be reported, not undo it.
  for (const [tmp, dest] of r.commits) {
    await rename(tmp, dest);
    r.renamed.push(dest);
  }
  await testHook('after', 'output/rename');
}

/** One step, with the test pause points around it (see core/test-hook.ts). */
async function runStep(r: ConversionRun, step: PlanStep): Promise<string | void> {
  await testHook('before', `${step.stage}/${step.id}`);
  r.ctx.signal.throwIfAborted();
  let d: string | void;
  try {
    d = await stepFn(step)(r, step);
  } catch (e) {
    throw r.ctx.signal.aborted ? r.ctx.signal.reason : writeFailure(r, e);
  }
  await testHook('after', `${step.stage}/${step.id}`);
  return d;
}

/**
 * A full or read-only file system, wherever a step hit it, as the one message that says where and how much is
 * needed; anything else is passed on as it is.
 */
function writeFailure(r: ConversionRun, e: unknown): unknown {
  if (!isNoSpace(e) && !isReadOnly(e)) return e;
  const disk = diskFile(r);
  const file = failedPath(r, e, disk);
  const inWork = file === r.ctx.work || file.startsWith(`${r.ctx.work}/`);
  const area = file.startsWith(`${cacheDir()}/`) ? 'cache' : inWork ? 'work' : 'output';
  const c = r.plan.content;
  const size = r.plan.layout?.diskSize ?? r.plan.filesystems.find((f) => f.role === 'root')?.size;
  // The disk's data is what a sparse disk file (and a converted copy of it) takes; its virtual size bounds it.
  const isDisk = file === disk || file === r.tmpOut;
  const layers = (r.image?.layers ?? []).reduce((n, l) => n + (l.size ?? 0), 0);
  const need = !isDisk
    ? {}
    : c
      ? { needBytes: c.blocks4k * 4096, needNote: `the disk's data${size ? `; the disk is ${formatSize(size)} at most` : ''}` }
      : layers > 0
        ? { needBytes: layers, needNote: "at least: the image's layers are that big" }
        : {};
  const what = isDisk
    ? 'the disk'
    : area === 'cache'
      ? 'the cache'
      : area === 'output'
        ? basename(file)
        : file === r.ctx.work
          ? 'the work files (kernel, initramfs, boot loader images)'
          : `the work file ${relative(r.ctx.work, file)}`;
  return asWriteError(e, { area, what, path: area === 'output' ? dirname(file) : area === 'work' ? r.ctx.work : file, ...need });
}

/**
 * The file a write failed on: named by the error when it can (copyFile's dest), else the disk, the work directory
 * or the cache, whichever has least room left (writes through a descriptor do not say which file).
 */
function failedPath(r: ConversionRun, e: unknown, disk: string): string {
  const err = e as { dest?: unknown; path?: unknown; cause?: unknown };
  const named = typeof err.dest === 'string' ? err.dest : typeof err.path === 'string' ? err.path : undefined;
  if (named) return resolve(named);
  if (err.cause && typeof err.cause === 'object') {
    const inner = err.cause as { dest?: unknown; path?: unknown };
    if (typeof inner.dest === 'string' || typeof inner.path === 'string') return failedPath(r, err.cause, disk);
  }
  const candidates = [disk, r.ctx.work, cacheDir()];
  const free = candidates.map((p) => freeBytes(p) ?? Number.POSITIVE_INFINITY);
  return candidates[free.indexOf(Math.min(...free))]!;
}
