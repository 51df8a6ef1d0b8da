// The library entry points: convert() an image into a disk (plan, then apply), and planImage() for `img2vm plan`.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { access, constants, mkdtemp, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { apply, planOnly, type CachedDisk, type Completed, type DiskHooks } from './apply.js';
import { BOOT_LOADERS } from './boot/index.js';
import type { Env } from './core/context.js';
import { Img2vmError, InterruptedError } from './core/errors.js';
import { nullSink, type EventSink, type StageId } from './core/events.js';
import { parseConvertOptions, type ConvertOptions, type ConvertOptionsInput } from './core/options.js';
import type { ConversionPlan, PlanInputs } from './core/plan.js';
import { createRandom, type Random } from './core/random.js';
import type { LuksSecrets } from './disk/luks/volume.js';
import { epochSeconds, fixedEpochSeconds } from './core/epoch.js';
import { img2vmVersion } from './core/paths.js';
import { cacheRepository, pullDiskFromCache } from './output/disk-artifact.js';
import { diskKey, diskRecordOf, DiskStore, openStore, type DiskKeyFields } from './store/index.js';
import { Scope } from './core/scope.js';
import { sweepTempOutputs, sweepWorkDirs, tempBeside, workDirPrefix } from './core/leftovers.js';
import { partitionByRole } from './disk/layout.js';
import { SLACK } from './disk/sizing.js';
import { GUEST_STRATEGIES } from './guest/index.js';
import { parseBinfmt } from './guest/binfmt.js';
import { readBinfmtFiles } from './tools/binfmt.js';
import type { OutputFormat } from './output/format.js';
import { formatOf, plan, Planning, strategyFor } from './plan.js';
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
  /** Set when --push pushed the disk (a containerDisk's image, or any other format as an OCI artifact). */
  pushed?: { ref: string; digest: string };
  /** With --cache-from/--cache-to or a pushed plain disk: the disk's key, and where a cached disk came from (null: converted). */
  disk?: { key: string; from: string | null };
  timings: Partial<Record<StageId, number>> & { total: number };
  /** The plan as it was carried out. */
  plan: ConversionPlan;
}

export interface ConvertHooks {
  sink?: EventSink;
  signal?: AbortSignal;
  /** Supplied by the CLI so a SIGINT can release resources; created here otherwise. */
  scope?: Scope;
  /**
   * Take the disk from img2vm's local store when it holds one for the same key, and keep a converted one there
   * (`img2vm run IMAGE`), without --cache-from/--cache-to. Unseeded disks are fine here: any disk made from the same
   * inputs serves a run, and nothing is shared beyond this machine.
   */
  localCache?: boolean;
}

/** The options, with the one rule the schema cannot express: some output must be asked for. */
function validate(input: ConvertOptionsInput | ConvertOptions): { o: ConvertOptions; format: OutputFormat } {
  const o = parseConvertOptions(input);
  if (o.output === undefined && !o.push) {
    throw new Img2vmError(
      'usage',
      'no output given',
      'add -o FILE, e.g. -o disk.qcow2 (only a pushed containerDisk needs no file: --push REGISTRY/REPO:TAG)',
    );
  }
  const format = formatOf(o);
  checkCacheOptions(o, format);
  return { o, format };
}

/** What the converted-disk cache cannot do: disks that differ on every run, side files, a containerDisk's image. */
function checkCacheOptions(o: ConvertOptions, format: OutputFormat): void {
  const flag = o.cacheFrom !== undefined ? '--cache-from' : o.cacheTo !== undefined ? '--cache-to' : undefined;
  if (!flag) return;
  if (o.cacheTo !== undefined) cacheRepository(o.cacheTo, '--cache-to');
  if (o.cacheFrom !== undefined) cacheRepository(o.cacheFrom, '--cache-from');
  if (o.seed === undefined)
    throw new Img2vmError(
      'usage',
      `${flag} needs --seed: without one every conversion draws new UUIDs, so no two disks are the same`,
      'add --seed with a value of your own (e.g. the image name), and SOURCE_DATE_EPOCH for fixed times',
    );
  if (o.luksPassword !== undefined || o.luksPasswordFile !== undefined)
    throw new Img2vmError(
      'usage',
      `${flag} does not go with a LUKS2 root: its master key is random on every run, and the cache key holds no secret`,
      'convert encrypted disks without the cache',
    );
  if (format.directKernel)
    throw new Img2vmError(
      'usage',
      `${flag} does not apply to --format rootfs`,
      'cache a disk format (qcow2, raw, ...)',
    );
  if (format.id === 'containerdisk' && (o.push || o.output === undefined))
    throw new Img2vmError(
      'usage',
      `${flag} does not go with pushing a containerdisk`,
      'write the containerdisk with -o and push it in a second step, or push a qcow2 with --push',
    );
}

/**
 * The converted-disk hooks apply takes: the cache (the local store, then --cache-from's repository; the finished
 * disk kept locally and pushed to --cache-to) and the record a --push of a plain disk carries; undefined when
 * neither is asked for.
 */
function diskHooks(
  o: ConvertOptions,
  format: OutputFormat,
  inputs: PlanInputs,
  scope: Scope,
  local = false,
): DiskHooks | undefined {
  const caching = local || o.cacheFrom !== undefined || o.cacheTo !== undefined;
  if (!caching && !(o.push && format.id !== 'containerdisk')) return undefined;
  const disks = new DiskStore(openStore());
  const sde = process.env.SOURCE_DATE_EPOCH;
  return {
    key: {
      version: img2vmVersion(),
      ...(inputs.sshKey ? { sshKeyText: inputs.sshKey.text } : {}),
      sourceDateEpoch: sde === undefined || sde === '' ? null : epochSeconds(),
    },
    ...(o.cacheTo !== undefined ? { cacheTo: o.cacheTo } : {}),
    keep: (fields, file, plan) =>
      caching ? disks.put(fields, file, scope, { plan }) : diskRecordOf(fields, file, { plan }),
    lookup: caching ? (fields, dest, env) => lookupDisk(disks, o, fields, dest, env) : undefined,
  };
}

/** The disk for these fields from the local store, else from --cache-from's repository (then kept locally too). */
async function lookupDisk(
  disks: DiskStore,
  o: ConvertOptions,
  fields: DiskKeyFields,
  dest: string,
  env: Env,
): Promise<CachedDisk | undefined> {
  const key = diskKey(fields);
  const log = (level: 'info' | 'warn', message: string) => env.sink({ type: 'log', level, message });
  const local = await disks.get(key, dest, env.scope);
  if (local) return { record: local, from: 'the local cache' };
  if (o.cacheFrom === undefined) return undefined;
  try {
    const rec = await pullDiskFromCache(o.cacheFrom, key, dest, env, { insecureRegistries: o.insecureRegistries });
    if (!rec) {
      log('info', `no disk with key ${key.slice(0, 12)} in ${o.cacheFrom}: converting`);
      return undefined;
    }
    await disks.adopt(rec, dest, env.scope);
    return { record: rec, from: `${o.cacheFrom}:${key}`, repo: o.cacheFrom };
  } catch (e) {
    if (env.signal.aborted) throw e;
    // A cache only saves time: a registry that fails or holds something else is reported, and the disk is made.
    log('warn', `--cache-from ${o.cacheFrom}: ${(e as Error).message}; converting instead`);
    return undefined;
  }
}

/** Checks what can be checked before any work: option combinations, tools, the output directory. */
async function preflightConvert(o: ConvertOptions, format: OutputFormat): Promise<void> {
  if (o.output !== undefined) await preflightOutput(o.output);
  preflight(conversionTools(o, format));
}

/** The host tools a conversion with these options runs (doctor asks the same question of the default one). */
export function conversionTools(o: ConvertOptions, format: OutputFormat): ToolName[] {
  const probe = plan(o, { inputs: readInputs(o) });
  return [
    ...new Set([
      ...probe.boot.loaders.flatMap((id) => BOOT_LOADERS[id].tools),
      ...GUEST_STRATEGIES[strategyFor(o)].tools,
      ...format.tools,
    ]),
  ];
}

async function preflightOutput(output: string): Promise<void> {
  const out = resolve(output);
  const dir = dirname(out);
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new Img2vmError(
      'outputNotWritable',
      `output directory ${dir} does not exist`,
      `create it first: mkdir -p ${dir}`,
    );
  }
  try {
    await access(dir, constants.W_OK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EROFS') {
      throw new Img2vmError(
        'outputNotWritable',
        `output directory ${dir} is on a read-only file system`,
        'choose an -o path on a writable file system (nothing was read or written)',
      );
    }
    throw new Img2vmError(
      'outputNotWritable',
      `output directory ${dir} is not writable`,
      'choose another -o path, or fix its permissions',
    );
  }
  const ost = await stat(out).catch(() => undefined);
  if (ost?.isDirectory())
    throw new Img2vmError('outputNotWritable', `output ${out} is a directory`, 'give a file name, e.g. -o disk.qcow2');
}

/**
 * The files options name, and what the host's binfmt_misc runs (a distro build for another architecture needs
 * it), read once at the start (so a plan is a function of data).
 */
function readInputs(o: ConvertOptions): PlanInputs {
  const binfmt = parseBinfmt(readBinfmtFiles());
  if (o.sshKey === undefined) return { binfmt };
  try {
    return { binfmt, sshKey: { file: o.sshKey, text: readFileSync(o.sshKey, 'utf8') } };
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `cannot read --ssh-key ${o.sshKey}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      'give the public key file, e.g. --ssh-key ~/.ssh/id_ed25519.pub',
    );
  }
}

/**
 * The LUKS2 secrets: the passphrase (given, or read from its file), and the master key — random from the system on
 * every run, --seed or not; only --luks-master-key-file fixes it (and then the salts and stripes come from the seeded
 * random too, so the bytes are reproducible).
 */
export function luksSecrets(o: ConvertOptions, random: Random): LuksSecrets | undefined {
  if (!o.luks) return undefined;
  // A file's one trailing newline is the editor's, not the passphrase's (as cryptsetup reads a key file it is not).
  const passphrase =
    o.luksPassword !== undefined
      ? Buffer.from(o.luksPassword, 'utf8')
      : withoutNewline(readSecretFile(o.luksPasswordFile!, '--luks-password-file', 'a file holding the passphrase'));
  const trimmed = passphrase;
  if (trimmed.length === 0)
    throw new Img2vmError(
      'usage',
      `--luks-password-file ${o.luksPasswordFile}: the passphrase is empty`,
      'write the passphrase into the file',
    );
  if (o.luksMasterKeyFile === undefined)
    return { passphrase: trimmed, masterKey: randomBytes(64), random: (n) => randomBytes(n) };
  const masterKey = readSecretFile(o.luksMasterKeyFile, '--luks-master-key-file', 'a file of 64 random bytes');
  if (masterKey.length !== 64 || masterKey.subarray(0, 32).equals(masterKey.subarray(32)))
    throw new Img2vmError(
      'usage',
      `--luks-master-key-file ${o.luksMasterKeyFile}: ${masterKey.length !== 64 ? `${masterKey.length} bytes, not 64` : 'its two halves are equal (AES-XTS refuses such a key)'}`,
      'make one with: head -c 64 /dev/urandom > master.key (tests and CI only)',
    );
  const seeded = random.fork('luks-secrets');
  return { passphrase: trimmed, masterKey, random: (n) => seeded.bytes(n) };
}

function withoutNewline(b: Buffer): Buffer {
  let n = b.length;
  if (n > 0 && b[n - 1] === 0x0a) n--;
  if (n > 0 && b[n - 1] === 0x0d && n === b.length - 1) n--;
  return b.subarray(0, n);
}

function readSecretFile(file: string, flag: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `cannot read ${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      `give ${what}`,
    );
  }
}

/** The stages' context: the run's, and the one epoch every time img2vm writes comes from. */
function envOf(work: string, hooks: { signal: AbortSignal; sink: EventSink; scope: Scope }, o: ConvertOptions): Env {
  // Unseeded runs still draw every value from one seed of their own, so every phase draws the same ids.
  return {
    work,
    ...hooks,
    random: createRandom(o.seed ?? randomBytes(16).toString('hex')),
    epoch: epochSeconds(),
    fixedEpoch: fixedEpochSeconds(),
  };
}

export async function convert(
  input: ConvertOptionsInput | ConvertOptions,
  hooks: ConvertHooks = {},
): Promise<ConvertResult> {
  const { o, format } = validate(input);
  const sink = hooks.sink ?? nullSink;
  const ac = new AbortController();
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, ac.signal]) : ac.signal;
  const scope = hooks.scope ?? new Scope();
  const t0 = performance.now();
  await preflightConvert(o, format);
  const inputs = readInputs(o);
  const work = await makeWorkDir('', sink);
  if (o.output !== undefined) await sweepTempOutputs(dirname(resolve(o.output))).then((gone) => logSwept(sink, gone));
  scope.defer(`remove ${work}`, () => rm(work, { recursive: true, force: true }));
  const env = envOf(work, { signal, sink, scope }, o);
  const final = o.output !== undefined ? resolve(o.output) : null;
  const out = { tmp: final ? tempBeside(final) : join(work, 'output.tmp'), final };
  const completed: Completed = { renamed: [] };
  try {
    const removeTmpOut = () => rm(out.tmp, { force: true });
    scope.defer(`remove ${out.tmp}`, removeTmpOut);
    let applied;
    try {
      applied = await apply(
        {
          planning: Planning.fromOptions(o, inputs, env.random),
          secrets: { password: o.password, luks: luksSecrets(o, env.random) },
          out,
          disk: diskHooks(o, format, inputs, scope, hooks.localCache),
        },
        env,
        completed,
      );
    } catch (e) {
      throw lateInterrupt(completed, final, signal) ?? e;
    }
    scope.release(removeTmpOut);
    const res = await result(applied, final, t0);
    const late = lateInterrupt(completed, final, signal);
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
  for (const p of gone)
    sink({ type: 'log', level: 'debug', message: `removed ${p}, left by an img2vm process that is gone` });
}

/**
 * An interruption that came when the run was already complete in part: the output renamed into place, or the
 * image pushed. The user is told what exists rather than "nothing was written".
 */
function lateInterrupt(c: Completed, final: string | null, signal: AbortSignal): InterruptedError | undefined {
  if (!signal.aborted || !(signal.reason instanceof InterruptedError)) return undefined;
  const done = [
    ...(c.renamed.length ? [`${c.renamed.at(-1)} was written`] : []),
    ...(c.pushed
      ? [`${c.pushed.ref} was pushed${final && !c.renamed.length ? ` (${final} was not written)` : ''}`]
      : []),
  ];
  return done.length ? new InterruptedError(signal.reason.signalName, { after: done.join(' and ') }) : undefined;
}

async function result(a: Awaited<ReturnType<typeof apply>>, final: string | null, t0: number): Promise<ConvertResult> {
  const p = a.plan;
  const st = await stat(a.file);
  const root = p.filesystems.find((f) => f.role === 'root');
  const c = p.content;
  if (!root || !c) throw new Error('a finished conversion has a root file system and its content');
  return {
    output: final,
    format: p.output.format,
    bootMode: p.boot.mode,
    bootloader:
      p.boot.mode === 'direct-kernel' ? null : p.boot.loaders.includes('systemd-boot') ? 'systemd-boot' : 'grub',
    partitionTable: p.layout?.table ?? 'none',
    diskSize: p.layout?.diskSize ?? st.size,
    fileSize: st.blocks * 512,
    rootfs: {
      bytes: c.bytes,
      files: c.files,
      entries: c.entries + SLACK.entries,
      fsSize: p.layout ? partitionByRole(p.layout, 'root')!.size : root.size,
      uuid: root.uuid,
    },
    partitions: (p.layout?.partitions ?? []).map((x) => ({ role: x.role, start: x.start, size: x.size })),
    kernelVersion: p.kernel?.version ?? null,
    distribution: p.guest.distribution,
    guestBuildCached: p.guest.cached,
    guestImage: a.guestImage,
    ...(a.pushed ? { pushed: a.pushed } : {}),
    ...(a.disk ? { disk: { key: a.disk.record.key, from: a.disk.from } } : {}),
    timings: { ...a.timings, total: Math.round(performance.now() - t0) },
    plan: p,
  };
}

/**
 * What a conversion would build, without building it: reads the image and flattens it as a conversion does (its
 * file data into a sparse work file, removed), so the sizes are the conversion's; a guest build or kernel that is
 * not cached leaves the plan estimated. Writes no output, needs no root.
 */
export async function planImage(
  input: ConvertOptionsInput | ConvertOptions,
  hooks: ConvertHooks = {},
): Promise<ConversionPlan> {
  const { o } = validate(input);
  const inputs = readInputs(o);
  Planning.fromOptions(o, inputs);
  const scope = hooks.scope ?? new Scope();
  const sink = hooks.sink ?? nullSink;
  const work = await makeWorkDir('plan-', sink);
  scope.defer(`remove ${work}`, () => rm(work, { recursive: true, force: true }));
  const env = envOf(work, { signal: hooks.signal ?? new AbortController().signal, sink, scope }, o);
  try {
    return await planOnly(
      Planning.fromOptions(o, inputs, env.random),
      { password: o.password, luks: luksSecrets(o, env.random) },
      env,
    );
  } finally {
    if (!hooks.scope) await scope.close();
  }
}
