// apply(): the conversion, stage by stage. Each stage is given what the ones before made and returns what it made;
// planning grows between them in its named phases (image, tree, content). Read top to bottom, this is the whole
// conversion: source → guest → rootfs → disk → boot → output.
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { BOOT_LOADERS } from './boot/index.js';
import { AUTO_ORDER, BUILDERS } from './build/index.js';
import type { Env } from './core/context.js';
import type { StageId } from './core/events.js';
import type { BootLoaderId, BuilderId, ConversionPlan, ImageFacts, PlanStep, TreeFacts } from './core/plan.js';
import { testHook } from './core/test-hook.js';
import { DISK_STEPS, openDisk, type Disk } from './disk/stage.js';
import { inodesFor, withSlack } from './disk/sizing.js';
import { detectOs } from './guest/detect.js';
import { passwordShadow } from './guest/configure.js';
import { GUEST_STRATEGIES } from './guest/index.js';
import { bundleFacts, img2vmKernelFacts } from './guest/img2vm.js';
import type { Bootable, GuestStrategy, Secrets } from './guest/strategy.js';
import { processOf } from './guest/workload.js';
import { FORMATS } from './output/index.js';
import type { OutputArtifact } from './output/format.js';
import { pushArtifact } from './output/push.js';
import { pushDisk, pushDiskToCache } from './output/disk-artifact.js';
import { diskKeyFields, type KeyContext } from './disk-key.js';
import type { DiskKeyFields, DiskRecord } from './store/index.js';
import type { Planning } from './plan.js';
import {
  configureTree,
  flattenImage,
  measureContent,
  treeFacts,
  type Configured,
  type EditGuestFile,
} from './rootfs/stage.js';
import type { Flattened } from './rootfs/layers.js';
import type { RootTree } from './rootfs/tree-edit.js';
import { binPath } from './rootfs/tree-path.js';
import { openSource } from './source/index.js';
import type { SourceImage } from './source/image.js';
import { writeFailure, type FailureContext } from './write-failure.js';

/** What the caller keeps track of while apply runs, so an interruption can say what was already complete. */
export interface Completed {
  /** Final paths renamed into place so far (the run is complete once the first is). */
  renamed: string[];
  pushed?: { ref: string; digest: string };
}

export interface ApplyInput {
  /** Planning after its first phase (the options). */
  planning: Planning;
  secrets: Secrets;
  /** The temporary output beside the target (or in the work directory), and the final path (null: push only). */
  out: { tmp: string; final: string | null };
  /** The converted-disk cache and the push of a plain disk: what they need besides the plan (see DiskHooks). */
  disk?: DiskHooks;
}

/** A finished disk from a cache: its record, and where it came from (the local store, a registry reference). */
export interface CachedDisk {
  record: DiskRecord;
  from: string;
  /** The --cache-from repository it was pulled from (a --cache-to of the same one pushes nothing). */
  repo?: string;
}

/**
 * How apply works with converted disks: once the guest stage ran, the key's fields are known and lookup() may place
 * the finished disk at the temporary output (then nothing is converted); after the output stage, keep() makes the
 * finished disk's record (and keeps it in the local store when caching), which a push and cacheTo take.
 */
export interface DiskHooks {
  key: KeyContext;
  lookup?(fields: DiskKeyFields, dest: string, env: Env): Promise<CachedDisk | undefined>;
  keep(fields: DiskKeyFields, file: string, plan: ConversionPlan, env: Env): Promise<DiskRecord>;
  /** --cache-to: the repository the finished disk is pushed to, tagged by its key. */
  cacheTo?: string;
}

export interface Applied {
  plan: ConversionPlan;
  /** The file the result is measured by: the output, else (a push alone) the containerDisk's qcow2. */
  file: string;
  /** The image the guest stage made (the daemon image a distro build tagged), null with nothing built. */
  guestImage: string | null;
  pushed?: { ref: string; digest: string };
  /** The finished disk's record; from: where a cached one came from (null: converted now). */
  disk?: { record: DiskRecord; from: string | null };
  timings: Partial<Record<StageId, number>>;
}

/** --cache-to: the finished disk pushed to the cache repository under its key. */
async function cacheTo(
  step: StepRun,
  repo: string,
  file: string,
  record: DiskRecord,
  plan: ConversionPlan,
  env: Env,
): Promise<void> {
  await step(
    'cache-to',
    () =>
      pushDiskToCache(file, record, repo, env, env.fixedEpoch, { insecureRegistries: plan.source.insecureRegistries }),
    (p) => `cached as ${p.ref}`,
  );
}

/**
 * A cache hit: the disk is at the temporary output already, so the stages that would have made it are skipped and
 * the output is renamed into place (a --push of a plain disk still pushes it). The plan is the one the disk was
 * made with, its output path this run's.
 */
async function fromCache(
  input: ApplyInput,
  current: ConversionPlan,
  hit: CachedDisk,
  env: Env,
  stages: Stages,
  completed: Completed,
): Promise<Applied> {
  const kept = (hit.record.meta as { plan?: ConversionPlan } | null)?.plan;
  const plan: ConversionPlan = kept
    ? {
        ...kept,
        steps: current.steps,
        output: { ...kept.output, path: current.output.path, push: current.output.push },
      }
    : current;
  const reason = `the disk (key ${hit.record.key.slice(0, 12)}) came from ${hit.from}`;
  for (const stage of ['rootfs', 'disk', 'boot'] as const) env.sink({ type: 'stage-skip', stage, reason });
  await stages.stage(plan, 'output', { work: env.work, plan }, async (step) => {
    if (plan.output.push !== null) {
      const ref = plan.output.push;
      completed.pushed = await step(
        'push',
        () =>
          pushDisk(input.out.tmp, hit.record, ref, env, env.fixedEpoch, {
            insecureRegistries: plan.source.insecureRegistries,
          }),
        (p) => p.digest,
      );
    }
    if (input.disk?.cacheTo && input.disk.cacheTo !== hit.repo)
      await cacheTo(step, input.disk.cacheTo, input.out.tmp, hit.record, plan, env);
  });
  env.signal.throwIfAborted();
  if (input.out.final !== null) {
    await rename(input.out.tmp, input.out.final);
    completed.renamed.push(input.out.final);
  }
  return {
    plan,
    file: input.out.final ?? input.out.tmp,
    guestImage: null,
    ...(completed.pushed ? { pushed: completed.pushed } : {}),
    disk: { record: hit.record, from: hit.from },
    timings: stages.timings,
  };
}

/** Runs the conversion: every stage in order, then the renames into place, all or nothing. */
export async function apply(input: ApplyInput, env: Env, completed: Completed): Promise<Applied> {
  const stages = new Stages(env);
  const f = await front(input.planning, env, stages, false, input.disk, input.out.tmp);
  if (!f.made) throw new Error('the guest stage made nothing outside img2vm plan');
  const { fields, hit } = f;
  if (hit) return fromCache(input, f.planning.plan, hit, env, stages, completed);
  const prepared = await prepare(f, input.secrets, env, stages, {
    lookupOnly: false,
    diskFile: (p) => diskFileFor(p, input.out.tmp, env),
  });
  const { plan, disk, flat, configured, made } = prepared;
  if (!made) throw new Error('the guest stage made nothing outside img2vm plan');
  const fail = failureContext(plan, disk.file, input.out.tmp, made.image, env);

  // rootfs (continued): what the loaders put on the ESP or beside the output, from the files the guest gave up.
  const files = new Map(configured.exported);
  await stages.stage(plan, 'rootfs-loaders', fail, async (step) => {
    for (const id of plan.boot.loaders) {
      const prepare = BOOT_LOADERS[id].prepare;
      if (prepare) for (const [name, file] of await step(id, () => prepare(plan, files, env))) files.set(name, file);
    }
  });

  // disk: the partition table and the file systems, the root's metadata after the data flattening wrote.
  await stages.stage(plan, 'disk', fail, async (step) => {
    for (const s of plan.steps.filter((x) => x.stage === 'disk')) {
      await step(s.id, () =>
        DISK_STEPS[s.id]!(disk, plan, s, { root: flat.tree.root, boot: configured.bootTree }, env),
      );
    }
  });

  // boot: boot code written into the finished disk.
  await stages.stage(plan, 'boot', fail, async (step) => {
    for (const id of plan.boot.loaders) {
      const install = BOOT_LOADERS[id].install;
      if (install) await step(id, () => install(plan, disk.target, env));
    }
  });

  // output: the disk closed (a qcow2 writes its tables now), turned into the format asked for, then pushed.
  disk.target.close();
  const format = FORMATS.find((f) => f.id === plan.output.format)!;
  let artifact: OutputArtifact | undefined;
  let record: DiskRecord | undefined;
  await stages.stage(plan, 'output', fail, async (step) => {
    artifact = await step(format.id, () => format.write({ disk: disk.file, dest: input.out.tmp, plan, files, env }));
    const made = artifact;
    if (input.disk && fields) {
      const keep = input.disk.keep;
      record = await step('keep', () => keep(fields, input.out.tmp, plan, env));
    }
    if (plan.output.push !== null) {
      const rec = record;
      completed.pushed = await step(
        'push',
        () =>
          format.id === 'containerdisk' || !rec
            ? pushArtifact(plan, made, env)
            : pushDisk(input.out.tmp, rec, plan.output.push!, env, env.fixedEpoch, {
                insecureRegistries: plan.source.insecureRegistries,
              }),
        (p) => p.digest,
      );
    }
    if (input.disk?.cacheTo && record) await cacheTo(step, input.disk.cacheTo, input.out.tmp, record, plan, env);
  });

  // Side files first, the output last: a disk that is in place always has its companions. From the first rename
  // on the run is complete: a signal now can only be reported, not undo it.
  await testHook('before', 'output/rename');
  env.signal.throwIfAborted();
  const commits: [string, string][] = [
    ...(artifact?.sideFiles ?? []),
    ...(input.out.final !== null ? [[input.out.tmp, input.out.final] as [string, string]] : []),
  ];
  for (const [tmp, dest] of commits) {
    await rename(tmp, dest);
    completed.renamed.push(dest);
  }
  await testHook('after', 'output/rename');
  const file = input.out.final ?? artifact?.containerDiskQcow2 ?? input.out.tmp;
  return {
    plan,
    file,
    guestImage: made.build?.image ?? null,
    ...(completed.pushed ? { pushed: completed.pushed } : {}),
    ...(record ? { disk: { record, from: null } } : {}),
    timings: stages.timings,
  };
}

/**
 * `img2vm plan`: the same stages as a conversion up to the last planning phase, so the plan shows what a conversion
 * builds. Nothing is built or fetched (a guest build or a kernel not in the caches leaves the plan estimated), and
 * the root file system's data goes to a sparse file in the work directory, removed with it.
 */
export async function planOnly(planning: Planning, secrets: Secrets, env: Env): Promise<ConversionPlan> {
  const stages = new Stages(env, { silent: true });
  const prepared = await prepare(await front(planning, env, stages, true), secrets, env, stages, {
    lookupOnly: true,
    diskFile: () => join(env.work, 'plan-root.raw'),
  });
  prepared.disk.target.close();
  return prepared.plan;
}

interface Prepared {
  plan: ConversionPlan;
  /** The guest stage's result; undefined in `img2vm plan` when it would have to build or fetch. */
  made: Bootable | undefined;
  disk: Disk;
  flat: Flattened;
  configured: Configured;
}

interface Front {
  planning: Planning;
  image: SourceImage;
  made: Bootable | undefined;
  /** The disk's key fields and the cached disk found for them, when the input has disk hooks. */
  fields?: DiskKeyFields;
  hit?: CachedDisk;
}

/**
 * source → guest, with the image phase of planning between them. With a disk cache to ask, the guest stage first
 * only resolves the kernel (its digest, from the signed index), asks the cache, and fetches the kernel only when the
 * cache has no disk for it.
 */
async function front(
  planning: Planning,
  env: Env,
  stages: Stages,
  lookupOnly: boolean,
  disk?: DiskHooks,
  dest?: string,
): Promise<Front> {
  let p = planning;

  // source: the image's config and layers, from the transport its reference names.
  const image = await stages.stage(p.plan, 'source', { work: env.work, plan: p.plan }, (step) =>
    step(
      p.plan.source.transport,
      () => openImage(p.plan, env),
      (img) => `${img.layers.length} layer${img.layers.length === 1 ? '' : 's'}, ${img.id.slice(0, 19)}`,
    ),
  );
  p = p.withImage(await imageFacts(image, p.needs(), env));

  // guest: made bootable by the strategy the plan chose (a template build, img2vm's kernel, or nothing).
  const strategy = GUEST_STRATEGIES[p.plan.guest.strategy];
  const plan = p.plan;
  const { made, fields, hit } = await stages.stage(plan, 'guest', { work: env.work, plan }, (step) =>
    step(
      strategy.id,
      async () => {
        if (!disk || lookupOnly) return { made: await strategy.make(plan, image, env, { lookupOnly }) };
        let m = await strategy.make(plan, image, env, { lookupOnly, peek: !!disk.lookup });
        if (!m) throw new Error('the guest stage made nothing outside img2vm plan');
        const keyFields = await diskKeyFields(plan, p.options, image, m, disk.key);
        const found = await disk.lookup?.(keyFields, dest!, env);
        if (found) return { made: m, fields: keyFields, hit: found };
        if (m.kernel?.peeked) m = await strategy.make(plan, image, env, { lookupOnly });
        return { made: m, fields: keyFields };
      },
      (r) => (r.hit ? `the disk from ${r.hit.from}` : r.made?.detail),
    ),
  );
  return { planning: p, image, made, ...(fields ? { fields } : {}), ...(hit ? { hit } : {}) };
}

/** rootfs, with the tree and content phases of planning: the tree written into the disk, its content measured. */
async function prepare(
  f: Front,
  secrets: Secrets,
  env: Env,
  stages: Stages,
  o: { lookupOnly: boolean; diskFile: (plan: ConversionPlan) => string },
): Promise<Prepared> {
  let p = f.planning;
  const { made, image } = f;
  const strategy = GUEST_STRATEGIES[p.plan.guest.strategy];
  const bootable = made?.image ?? image;

  // rootfs: the layers flattened straight into the root file system inside the disk.
  const disk = openDisk(p.plan, o.diskFile(p.plan), env, {
    ...(o.lookupOnly ? { container: 'raw' as const } : {}),
    ...(secrets.luks ? { luks: secrets.luks } : {}),
  });
  const fail = failureContext(p.plan, disk.file, undefined, bootable, env);
  const flat = await stages.stage(p.plan, 'rootfs', fail, (step) =>
    step(
      'flatten',
      () => flattenImage(bootable, disk.root, env, { warnLost: p.plan.guest.strategy === 'image' }),
      (f) => `${f.stats.files} files`,
    ),
  );
  p = p.withTree(bootableTreeFacts(flat.tree, strategy, made, o.lookupOnly));

  // rootfs (continued): the plan's guest files written into the tree, then what they add up to measured.
  if (made) await strategy.workFiles?.(p.plan, made, env);
  const plan3 = p.plan;
  const configured = await stages.stage(plan3, 'rootfs-configure', fail, (step) =>
    step(
      'configure',
      () =>
        configureTree(flat.tree, plan3, editor(flat.tree, plan3, strategy, secrets, env), env, {
          estimate: o.lookupOnly && !made,
        }),
      () => {
        const n = plan3.guestFiles.filter((g) => g.fs !== 'esp').length;
        return `${n} file${n === 1 ? '' : 's'}`;
      },
    ),
  );
  // The writer's own measure, with the inodes the plan will give the file system.
  const content = measureContent(flat.tree, configured.bootTree, (c) =>
    disk.root.measure(flat.tree.root).minimumBytes(inodesFor(withSlack(c))),
  );
  // Without the guest's build or kernel (img2vm plan), the source image was measured: the sizes are an estimate.
  p = p.withContent(o.lookupOnly && !made ? { ...content, estimated: true } : content);
  return { plan: p.plan, made, disk, flat, configured };
}

/** Opens the image the plan names, with the plan's pull policy, platform and plain-HTTP registries. */
function openImage(plan: ConversionPlan, env: Env): Promise<SourceImage> {
  return openSource(plan.image, env, undefined, {
    pull: plan.source.pull,
    ...(plan.source.platform ? { platform: plan.source.platform } : {}),
    insecureRegistries: plan.source.insecureRegistries,
    verifyCache: plan.source.verifyCache,
  });
}

/** What the image's config says, and what the image phase of planning needs found out: its distribution, the builders. */
async function imageFacts(
  image: SourceImage,
  needs: { os: boolean; builders: boolean },
  env: Env,
): Promise<ImageFacts> {
  const facts: ImageFacts = {
    source: {
      transport: image.transport ?? 'docker-daemon',
      id: image.id,
      layers: image.layers.length,
      daemonId: image.daemonId,
    },
    process: processOf(image.config.config),
    architecture: image.config.architecture ?? 'amd64',
  };
  if (needs.os) facts.os = (await detectOs(image, env.signal)) ?? null;
  if (needs.builders) {
    const builders: Partial<Record<BuilderId, boolean>> = {};
    for (const id of AUTO_ORDER) builders[id] = (await BUILDERS[id].available(env)).ok;
    facts.builders = builders;
  }
  return facts;
}

/** The tree phase's facts: the kernel in the tree or the one the strategy brought, and how the guest was made. */
function bootableTreeFacts(
  tree: RootTree,
  strategy: GuestStrategy,
  made: Bootable | undefined,
  lookupOnly: boolean,
): TreeFacts {
  const brought: Pick<TreeFacts, 'kernel' | 'kernelBundle' | 'build'> = {
    kernel: made?.kernel ? img2vmKernelFacts(made.kernel.version) : null,
    ...(made?.kernel ? { kernelBundle: bundleFacts(made.kernel) } : {}),
    ...(made?.build ? { build: made.build } : {}),
  };
  // `img2vm plan` without the guest's build measures the source image: no kernel need be there yet.
  if (lookupOnly && (!made || !strategy.kernelFromImage)) {
    const t = treeFacts(tree, false, brought, '');
    return { ...t, ...(made ? {} : { estimated: true }) };
  }
  return treeFacts(tree, strategy.kernelFromImage, brought, strategy.noKernelHint);
}

/** How the configure step carries out `edit` guest files: the root password here, the rest by the strategy. */
function editor(
  tree: RootTree,
  plan: ConversionPlan,
  strategy: GuestStrategy,
  secrets: Secrets,
  env: Env,
): EditGuestFile {
  let strategyEdited = false;
  return async (f) => {
    if (f.path === '/etc/shadow' && f.by !== 'distro') {
      if (secrets.password === undefined) throw new Error('the plan edits /etc/shadow but no password was given');
      const shadow = (await tree.readFile(binPath('/etc/shadow')))?.toString('utf8') ?? '';
      const group = (await tree.readFile(binPath('/etc/group')))?.toString('utf8') ?? '';
      const { content, gid } = passwordShadow(shadow, group, secrets.password, env.random.fork('password'), env.epoch);
      tree.writeFile(binPath('/etc/shadow'), content, { mode: 0o640, uid: 0, gid });
    } else if (!strategyEdited && strategy.edit) {
      strategyEdited = true;
      await strategy.edit(tree, plan, secrets, env);
    }
  };
}

/** The file the disk is assembled in: the temporary output when the format allows it, else a work file. */
function diskFileFor(plan: ConversionPlan, tmpOut: string, env: Env): string {
  return plan.disk.inPlace ? tmpOut : join(env.work, `disk.${plan.disk.container}`);
}

/** What a write failure is explained with, once the disk is open. */
function failureContext(
  plan: ConversionPlan,
  disk: string,
  tmpOut: string | undefined,
  image: SourceImage,
  env: Env,
): FailureContext {
  return {
    disk,
    ...(tmpOut ? { tmpOut } : {}),
    work: env.work,
    plan,
    layerBytes: image.layers.reduce((n, l) => n + (l.size ?? 0), 0),
  };
}

type StepRun = <T>(id: string, fn: () => Promise<T>, detail?: (t: T) => string | undefined) => Promise<T>;

/** The stage line a group of steps shows, keyed like the plan's stages; rootfs continues over three groups. */
const GROUP_STAGE: Record<string, StageId> = { 'rootfs-configure': 'rootfs', 'rootfs-loaders': 'rootfs' };
const SKIPPED: Partial<Record<StageId, string>> = {
  boot: 'no boot code to write: the EFI system partition holds the boot loader',
};

/**
 * Runs the stages: one stage line each (the rootfs stage's three groups share one), the test pause points around
 * each step (STAGE/ID, as IMG2VM_TEST_HOOK names them), timings, and a full or read-only file system explained.
 */
class Stages {
  readonly timings: Partial<Record<StageId, number>> = {};
  private open: { stage: StageId; t0: number; details: string[] } | undefined;

  constructor(
    private readonly env: Env,
    private readonly o: { silent?: boolean } = {},
  ) {}

  async stage<T>(
    plan: ConversionPlan,
    group: StageId | 'rootfs-configure' | 'rootfs-loaders',
    fail: FailureContext,
    body: (step: StepRun) => Promise<T>,
  ): Promise<T> {
    const stage = GROUP_STAGE[group] ?? (group as StageId);
    const steps = plan.steps.filter((s) => s.stage === stage);
    this.env.signal.throwIfAborted();
    if (this.open?.stage !== stage) this.start(stage, steps, plan);
    const step: StepRun = async (id, fn, detail) => {
      await testHook('before', `${stage}/${id}`);
      this.env.signal.throwIfAborted();
      let r;
      try {
        r = await fn();
      } catch (e) {
        throw this.env.signal.aborted ? this.env.signal.reason : writeFailure(e, fail);
      }
      await testHook('after', `${stage}/${id}`);
      const d = detail?.(r);
      if (d && this.open) this.open.details.push(d);
      return r;
    };
    const result = await body(step);
    // The rootfs stage ends with its last group; every other stage with its own.
    if (group !== 'rootfs' && group !== 'rootfs-configure') this.end(plan, stage, steps);
    return result;
  }

  private start(stage: StageId, steps: PlanStep[], plan: ConversionPlan): void {
    this.open = { stage, t0: performance.now(), details: [] };
    if (this.o.silent || steps.length === 0) return;
    if (stage === 'guest' && plan.guest.strategy === 'image') return;
    this.env.sink({ type: 'stage-start', stage, title: stageTitle(stage, steps) });
  }

  private end(plan: ConversionPlan, stage: StageId, steps: PlanStep[]): void {
    const o = this.open;
    this.open = undefined;
    if (!o || this.o.silent) return;
    if (steps.length === 0) {
      this.env.sink({ type: 'stage-skip', stage, reason: SKIPPED[stage] ?? 'nothing to do for this conversion' });
      return;
    }
    if (stage === 'guest' && plan.guest.strategy === 'image') {
      this.env.sink({ type: 'stage-skip', stage, reason: plan.guest.reason });
      return;
    }
    const ms = Math.round(performance.now() - o.t0);
    this.timings[stage] = (this.timings[stage] ?? 0) + ms;
    this.env.sink({ type: 'stage-end', stage, ms, detail: o.details.join(', ') || undefined });
  }
}

/** The line a stage shows: one step's own title, or what the stage does as a whole. */
function stageTitle(stage: StageId, steps: PlanStep[]): string {
  if (steps.length === 1) return steps[0]!.title;
  if (stage === 'boot')
    return `Install bootloader (${steps.map((s) => BOOT_LOADERS[s.id as BootLoaderId].label).join(' + ')})`;
  if (stage === 'disk') return 'Partition and format';
  if (stage === 'rootfs') return 'Flatten layers and write the guest configuration';
  return steps.map((s) => s.title).join(', ');
}
