// The library entry points: convert() an image into a disk (plan, then apply), and planImage() for `img2vm plan`.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { access, constants, mkdtemp, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { apply } from './apply.js';
import { BOOT_LOADERS } from './boot/index.js';
import type { RunContext } from './core/context.js';
import type { ConversionRun } from './core/conversion.js';
import { Img2vmError, InterruptedError } from './core/errors.js';
import { nullSink, type EventSink, type StageId } from './core/events.js';
import { parseConvertOptions, type ConvertOptions, type ConvertOptionsInput } from './core/options.js';
import type { ConversionPlan, ImageFacts } from './core/plan.js';
import { createRandom } from './core/random.js';
import { epochSeconds } from './core/epoch.js';
import { Scope } from './core/scope.js';
import { sweepTempOutputs, sweepWorkDirs, tempBeside, workDirPrefix } from './core/leftovers.js';
import { partitionByRole } from './disk/layout.js';
import { GUEST_STRATEGIES } from './guest/index.js';
import { resolveFormat } from './output/index.js';
import type { OutputFormat } from './output/format.js';
import { plan, strategyFor } from './plan.js';
import { DockerClient } from './source/docker-api.js';
import { LayerFlattener } from './rootfs/layers.js';
import { MemoryStore } from './rootfs/memory-store.js';
import { findKernelInTree, hasResolvedInTree, probeUserlandInTree } from './rootfs/tree-guest.js';
import { stepFn } from './apply.js';
import { cachedKernel } from './guest/img2vm.js';
import { lookupGuestBuild } from './guest/distro.js';
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
  /** The plan as it was carried out. */
  plan: ConversionPlan;
}

export interface ConvertHooks {
  sink?: EventSink;
  signal?: AbortSignal;
  /** Supplied by the CLI so a SIGINT can release resources; created here otherwise. */
  scope?: Scope;
}

/** The options, with the one rule the schema cannot express: some output must be asked for. */
function validate(input: ConvertOptionsInput | ConvertOptions): { o: ConvertOptions; format: OutputFormat } {
  const o = parseConvertOptions(input);
  if (o.output === undefined && !o.push) {
    throw new Img2vmError('usage', 'no output given', 'add -o FILE, e.g. -o disk.qcow2 (only a pushed containerDisk needs no file: --push REGISTRY/REPO:TAG)');
  }
  return { o, format: resolveFormat(o.output ?? '', o.format ?? (o.output === undefined ? 'containerdisk' : undefined)) };
}

/** Host tools an output format needs (img2vm writes raw, qcow2, containerdisk and rootfs itself). */
const FORMAT_TOOLS: Record<string, ToolName[]> = { vmdk: ['qemu-img'], vhdx: ['qemu-img'], vhd: ['qemu-img'], vdi: ['qemu-img'] };

/** Checks what can be checked before any work: option combinations, tools, the output directory. */
async function preflightConvert(o: ConvertOptions, format: OutputFormat): Promise<void> {
  if (o.output !== undefined) await preflightOutput(o.output);
  preflight(conversionTools(o, format));
}

/** The host tools a conversion with these options runs (doctor asks the same question of the default one). */
export function conversionTools(o: ConvertOptions, format: OutputFormat): ToolName[] {
  const probe = plan(o, { inputs: readInputs(o) });
  const tools: ToolName[] = [...probe.boot.loaders.flatMap((id) => BOOT_LOADERS[id].tools), ...GUEST_STRATEGIES[strategyFor(o)].tools];
  if (FORMAT_TOOLS[format.id]) tools.push(...FORMAT_TOOLS[format.id]!);
  return [...new Set(tools)];
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
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EROFS') {
      throw new Img2vmError('outputNotWritable', `output directory ${dir} is on a read-only file system`, 'choose an -o path on a writable file system (nothing was read or written)');
    }
    throw new Img2vmError('outputNotWritable', `output directory ${dir} is not writable`, 'choose another -o path, or fix its permissions');
  }
  const ost = await stat(out).catch(() => undefined);
  if (ost?.isDirectory()) throw new Img2vmError('outputNotWritable', `output ${out} is a directory`, 'give a file name, e.g. -o disk.qcow2');
}

/** The files options name, read once at the start (so a plan is a function of data). */
function readInputs(o: ConvertOptions): NonNullable<ImageFacts['inputs']> {
  if (o.sshKey === undefined) return {};
  try {
    return { sshKey: { file: o.sshKey, text: readFileSync(o.sshKey, 'utf8') } };
  } catch (e) {
    throw new Img2vmError('usage', `cannot read --ssh-key ${o.sshKey}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'give the public key file, e.g. --ssh-key ~/.ssh/id_ed25519.pub');
  }
}

/** A run's state; plan() is re-derived from its options and facts whenever a step learns something. */
function newRun(o: ConvertOptions, format: OutputFormat, ctx: RunContext, work: string): ConversionRun {
  const outPath = o.output !== undefined ? resolve(o.output) : null;
  const tmpOut = outPath ? tempBeside(outPath) : join(work, 'output.tmp');
  const facts: ImageFacts = { inputs: readInputs(o) };
  let docker: DockerClient | undefined;
  const r: ConversionRun = {
    options: o,
    plan: plan(o, facts, { random: ctx.random }),
    facts,
    ctx,
    epoch: epochSeconds(),
    exported: new Map(),
    tmpOut,
    outPath,
    commits: [],
    renamed: [],
    docker: () => (docker ??= new DockerClient(undefined, ctx.signal)),
    replan: () => {
      r.plan = plan(o, r.facts, { random: ctx.random });
    },
  };
  return r;
}

export async function convert(input: ConvertOptionsInput | ConvertOptions, hooks: ConvertHooks = {}): Promise<ConvertResult> {
  const { o, format } = validate(input);
  const sink = hooks.sink ?? nullSink;
  const ac = new AbortController();
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, ac.signal]) : ac.signal;
  const scope = hooks.scope ?? new Scope();
  const t0 = performance.now();
  const timings: Partial<Record<StageId, number>> = {};
  await preflightConvert(o, format);
  const work = await makeWorkDir('', sink);
  if (o.output !== undefined) await sweepTempOutputs(dirname(resolve(o.output))).then((gone) => logSwept(sink, gone));
  scope.defer(`remove ${work}`, () => rm(work, { recursive: true, force: true }));
  // Unseeded runs still draw every value from one seed of their own, so re-planning never changes an id.
  const ctx: RunContext = { work, signal, sink, scope, random: createRandom(o.seed ?? randomBytes(16).toString('hex')) };
  try {
    const r = newRun(o, format, ctx, work);
    const removeTmpOut = () => rm(r.tmpOut, { force: true });
    scope.defer(`remove ${r.tmpOut}`, removeTmpOut);
    try {
      await apply(r, timings);
    } catch (e) {
      throw lateInterrupt(r, signal) ?? e;
    }
    scope.release(removeTmpOut);
    const res = await result(r, timings, t0);
    const late = lateInterrupt(r, signal);
    if (late) throw late;
    return res;
  } finally {
    if (!hooks.scope) await scope.close();
  }
}

/** A private work directory in TMPDIR, named for its owner, after sweeping those of runs that were killed. */
async function makeWorkDir(kind: '' | 'plan-', sink: EventSink): Promise<string> {
  const tmp = process.env.TMPDIR || tmpdir();
  logSwept(sink, await sweepWorkDirs(tmp));
  return mkdtemp(join(tmp, workDirPrefix(kind)));
}

function logSwept(sink: EventSink, gone: string[]): void {
  for (const p of gone) sink({ type: 'log', level: 'debug', message: `removed ${p}, left by an img2vm process that is gone` });
}

/**
 * An interruption that came when the run was already complete in part: the output renamed into place, or the
 * image pushed. The user is told what exists rather than "nothing was written".
 */
function lateInterrupt(r: ConversionRun, signal: AbortSignal): InterruptedError | undefined {
  if (!signal.aborted || !(signal.reason instanceof InterruptedError)) return undefined;
  const done = [
    ...(r.renamed.length ? [`${r.renamed.at(-1)} was written`] : []),
    ...(r.pushed ? [`${r.pushed.ref} was pushed${r.outPath && !r.renamed.length ? ` (${r.outPath} was not written)` : ''}`] : []),
  ];
  return done.length ? new InterruptedError(signal.reason.signalName, { after: done.join(' and ') }) : undefined;
}

async function result(r: ConversionRun, timings: Partial<Record<StageId, number>>, t0: number): Promise<ConvertResult> {
  const p = r.plan;
  const st = await stat(r.outPath ?? r.artifact?.containerDiskQcow2 ?? r.tmpOut);
  const root = p.filesystems.find((f) => f.role === 'root')!;
  const c = p.content!;
  return {
    output: r.outPath,
    format: p.output.format,
    bootMode: p.boot.mode,
    bootloader: p.boot.mode === 'direct-kernel' ? null : p.boot.loaders.includes('systemd-boot') ? 'systemd-boot' : 'grub',
    partitionTable: p.layout?.table ?? 'none',
    diskSize: p.layout?.diskSize ?? st.size,
    fileSize: st.blocks * 512,
    rootfs: { bytes: c.bytes, files: c.files, entries: c.entries + 1000, fsSize: p.layout ? partitionByRole(p.layout, 'root')!.size : root.size, uuid: root.uuid },
    partitions: (p.layout?.partitions ?? []).map((x) => ({ role: x.role, start: x.start, size: x.size })),
    kernelVersion: p.kernel?.version ?? null,
    distribution: p.guest.distribution,
    guestBuildCached: p.guest.cached,
    guestImage: r.facts.guest?.image ?? null,
    ...(r.pushed ? { pushed: r.pushed } : {}),
    timings: { ...timings, total: Math.round(performance.now() - t0) },
    plan: p,
  };
}

/**
 * What a conversion would build, without building it: reads the image (its layers decide the sizes), and for
 * the distro strategy looks up a cached guest build. Writes nothing but temporary files, needs no root.
 */
export async function planImage(input: ConvertOptionsInput | ConvertOptions, hooks: ConvertHooks = {}): Promise<ConversionPlan> {
  const { o, format } = validate(input);
  plan(o, { inputs: readInputs(o) });
  const scope = hooks.scope ?? new Scope();
  const work = await makeWorkDir('plan-', hooks.sink ?? nullSink);
  scope.defer(`remove ${work}`, () => rm(work, { recursive: true, force: true }));
  const ctx: RunContext = { work, signal: hooks.signal ?? new AbortController().signal, sink: hooks.sink ?? nullSink, scope, random: createRandom(o.seed ?? randomBytes(16).toString('hex')) };
  try {
    const r = newRun(o, format, ctx, work);
    // The same source step a conversion runs: the image, its process, and for auto its distribution and builders.
    await stepFn(r.plan.steps[0]!)(r, r.plan.steps[0]!);
    let measured = r.image!;
    let estimated = false;
    const strategy = r.plan.guest.strategy;
    if (strategy === 'distro') {
      const looked = await lookupGuestBuild(r);
      if (looked) measured = looked;
      else estimated = true;
    } else if (strategy === 'img2vm') await cachedKernel(r);
    // Flattened as a conversion would, with the contents counted and dropped: exact sizes, kernel and userland.
    const f = new LayerFlattener({ store: new MemoryStore({ discard: true }), epoch: { sec: r.epoch, nsec: 0 }, signal: ctx.signal, onWarning: (m) => ctx.sink({ type: 'log', level: 'warn', stage: 'rootfs', message: m }) });
    for (const layer of measured.layers) await f.applyLayer(await layer.open());
    const { tree, stats } = f.finish();
    await measured.afterFlatten?.(tree, { warnLost: false });
    r.facts.content = { blocks4k: stats.blocks4k, entries: stats.files + stats.dirs + stats.symlinks + stats.specials, bytes: stats.bytes, files: stats.files, ...(estimated ? { estimated: true } : {}) };
    if (!estimated && GUEST_STRATEGIES[strategy].kernelFromImage) r.facts.kernel = findKernelInTree(tree) ?? null;
    r.facts.hasResolved = hasResolvedInTree(tree);
    r.facts.userland = probeUserlandInTree(tree);
    r.replan();
    return r.plan;
  } finally {
    if (!hooks.scope) await scope.close();
  }
}
