// `img2vm run IMAGE [COMMAND [ARG...]]` as `docker run`: the image converted once into the cache, booted ephemerally with this run's settings.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import { PassThrough } from 'node:stream';
import { Img2vmError, InterruptedError, isImg2vmError } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import { parseCpus, parseMem, parseTimeout } from '../vm/qemu.js';
import { runDisk, type RunIo, type RunResult } from '../vm/run.js';
import {
  envEntry,
  envFileEntries,
  parsePublishFlag,
  parseVolume,
  renderRunConfig,
  resolveCommand,
  type RunConfig,
} from '../vm/run-config.js';
import { checkVolume, startShares } from '../vm/virtiofs.js';
import { CrlfToLf, plainLine } from '../vm/workload.js';
import { FORMAT_BY_EXTENSION } from '../vm/disk.js';
import { stderr } from './print.js';
import { cachedDisk } from './run-cache.js';

/** docker run's exit status when docker itself failed (here: img2vm, before or around the workload). */
export const RUN_FAILED = 125;

/**
 * Whether `run`'s argument is a disk (today's meaning) rather than an image reference: a file name img2vm writes
 * disks under (.qcow2, .raw, .img, .ext4, ... or NAME.firecracker.json) without a transport prefix. Such a name
 * is never read as an image, even when the file is missing (then it is "disk not found"); anything else is an
 * image reference: NAME[:TAG], docker://, docker-daemon:, oci:, oci-archive:, docker-archive:.
 */
export function isDiskTarget(target: string): boolean {
  if (/^(docker|docker-daemon|oci|oci-archive|docker-archive):/.test(target)) return false;
  if (/\.firecracker\.json$/i.test(target)) return true;
  const ext = /\.([A-Za-z0-9]+)$/.exec(basename(target))?.[1]?.toLowerCase();
  if (ext && Object.hasOwn(FORMAT_BY_EXTENSION, ext)) return true;
  return existsSync(target) && statSync(target).isFile() && !/\.(tar|tgz|tar\.gz)$/i.test(target);
}

/**
 * Splits `run`'s arguments as docker does: img2vm's options (before and after IMAGE), then IMAGE, then from the
 * first argument that is not an option (or after `--`) the command and its arguments, untouched. Returns the
 * arguments for commander with the command behind a `--`, so none of it is taken as an option.
 */
export function splitRunArgs(cmd: Command, args: readonly string[]): string[] {
  const takesValue = (flag: string): boolean | undefined => {
    const o = cmd.options.find((x) => x.short === flag || x.long === flag);
    return o ? o.required || o.optional : undefined;
  };
  const opts: string[] = [];
  let target: string | undefined;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      i++;
      if (target === undefined && i < args.length) target = args[i++];
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      if (target !== undefined) break;
      target = a;
      continue;
    }
    opts.push(a);
    if (a.startsWith('--')) {
      if (!a.includes('=') && takesValue(a) && i + 1 < args.length) opts.push(args[++i]!);
      continue;
    }
    // Short flags, possibly combined (-it); the last of them may take the next argument as its value.
    const letters = a.slice(1);
    const firstValue = [...letters].findIndex((c) => takesValue(`-${c}`));
    if (firstValue === letters.length - 1 && i + 1 < args.length) opts.push(args[++i]!);
  }
  return [...opts, ...(target !== undefined ? [target] : []), '--', ...args.slice(i)];
}

export interface RunImageFlags {
  env: string[];
  envFile: string[];
  publish: string[];
  volume: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  interactive?: boolean;
  tty?: boolean;
  rm?: boolean;
  memory?: string;
  mem: string;
  cpus: string;
  name?: string;
  init?: string;
  timeout?: string;
  quiet?: boolean;
  verbose?: boolean;
  json?: boolean;
}

/** docker's --cpus takes fractions; a VM has whole CPUs: rounded up. */
export function cpusOf(text: string): number {
  const n = Number(text);
  if (/^\s*\d+(\.\d+)?\s*$/.test(text) && n > 0 && n <= 255) return Math.ceil(n);
  return parseCpus(text);
}

function readEnvFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `cannot read --env-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      'give a file of NAME=VALUE lines',
    );
  }
}

/** This run's environment: --env-file entries, then -e (later wins, as in docker). */
export function runEnv(f: Pick<RunImageFlags, 'env' | 'envFile'>, host: NodeJS.ProcessEnv): string[] {
  return [
    ...f.envFile.flatMap((file) => envFileEntries(readEnvFile(file), host)),
    ...f.env.map((e) => envEntry(e, host)).filter((e): e is string => e !== undefined),
  ];
}

/** This terminal's size, "ROWS COLS" lines, each time it changes (SIGWINCH), for -t's guest terminal. */
function windowSizes(scope: Scope): NodeJS.ReadableStream {
  const out = new PassThrough();
  const onResize = () => {
    if (process.stdout.rows && process.stdout.columns) out.write(`${process.stdout.rows} ${process.stdout.columns}\n`);
  };
  process.stdout.on('resize', onResize);
  scope.defer('stop following the window size', () => {
    process.stdout.off('resize', onResize);
    out.end();
  });
  return out;
}

function ttyMissing(): never {
  throw new Img2vmError('usage', 'the input device is not a TTY', 'leave out -t when stdin is not a terminal', {
    exitCode: RUN_FAILED,
  });
}

/** The console as `docker run` gives it: with -t the user's terminal in raw mode; with -i the user's input; else neither. */
function imageIo(scope: Scope, f: RunImageFlags): RunIo {
  const stdin = process.stdin;
  if (f.tty) {
    if (!stdin.isTTY) ttyMissing();
    stdin.setRawMode(true);
    scope.defer('restore the terminal', () => stdin.setRawMode(false));
  }
  if (f.interactive)
    scope.defer('stop reading the terminal', () => {
      stdin.pause();
      if ('unref' in stdin && typeof stdin.unref === 'function') stdin.unref();
    });
  const lf = f.tty ? undefined : new CrlfToLf();
  if (lf) scope.defer('flush the console', () => process.stdout.write(lf.end()));
  return {
    // With -t, keystrokes go to the guest's terminal; -i alone has a port of its own (runImage).
    input: f.interactive && f.tty ? stdin : undefined,
    terminal: !!f.tty,
    output: (b) => process.stdout.write(lf ? lf.push(b) : b),
    own: f.verbose ? (line) => stderr(`${plainLine(line)}\n`) : undefined,
  };
}

/** The run config of this run: the command as docker resolves it against the image's, and the per-run settings. */
export function runConfigOf(
  f: RunImageFlags,
  command: string[],
  imageEntrypoint: readonly string[],
  mounts: RunConfig['mounts'],
  host: NodeJS.ProcessEnv,
): RunConfig {
  const rows = process.stdout.rows;
  const cols = process.stdout.columns;
  return {
    argv: resolveCommand(imageEntrypoint, f.entrypoint, command),
    env: runEnv(f, host),
    cwd: f.workdir,
    user: f.user,
    tty: !!f.tty,
    interactive: !!f.interactive,
    ...(f.tty && rows && cols ? { rows, cols } : {}),
    mounts,
  };
}

/** Whether the run asks for anything only img2vm's init can do. */
function perRun(f: RunImageFlags, command: string[]): boolean {
  return (
    command.length > 0 ||
    f.env.length + f.envFile.length + f.volume.length > 0 ||
    f.workdir !== undefined ||
    f.user !== undefined ||
    f.entrypoint !== undefined
  );
}

/** Parses every flag before anything starts, so a mistake costs no conversion. */
function parseFlags(f: RunImageFlags) {
  return {
    publish: f.publish.map(parsePublishFlag),
    volumes: f.volume.map(parseVolume),
    memMiB: parseMem(f.memory ?? f.mem),
    cpus: cpusOf(f.cpus),
    timeoutMs: f.timeout !== undefined ? parseTimeout(f.timeout) : undefined,
    init: (f.init ?? 'img2vm') as 'img2vm' | 'distro',
  };
}

export interface RunImageResult extends RunResult {
  /** The image run and where its disk came from: converted by this run, or taken from the store. */
  image: { ref: string; converted: boolean; key: string | null };
}

/** Runs IMAGE; resolves with the workload's status. img2vm's own failures exit 125, as docker's do. */
export async function runImage(
  image: string,
  command: string[],
  f: RunImageFlags,
  ctx: { scope: Scope; signal: AbortSignal },
): Promise<RunImageResult> {
  try {
    const p = parseFlags(f);
    if (f.init !== undefined && f.init !== 'img2vm' && f.init !== 'distro')
      throw new Img2vmError(
        'usage',
        `--init ${f.init}`,
        'img2vm run IMAGE takes --init img2vm (the default) or distro',
      );
    runEnv(f, process.env);
    // What can be refused is refused before the conversion.
    if (f.tty && !process.stdin.isTTY) ttyMissing();
    for (const v of p.volumes) await checkVolume(v);
    const dir = await mkdtemp(
      join(tmpdir(), `img2vm-run-${f.name ? `${f.name.replace(/[^A-Za-z0-9_.-]/g, '_')}-` : ''}`),
    );
    ctx.scope.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
    const disk = await cachedDisk(image, { init: p.init, quiet: !!f.quiet || !!f.json, verbose: !!f.verbose }, ctx);
    if (disk.entrypoint === undefined && perRun(f, command))
      throw new Img2vmError(
        'usage',
        "this run's settings (command, -e, -w, -u, --entrypoint, -v) reach img2vm's init only",
        'leave out --init distro (run uses --init img2vm by default)',
      );
    const { shares, mounts } = await startShares(p.volumes, dir, ctx.scope);
    const config = join(dir, 'run-config.raw');
    await writeFile(config, renderRunConfig(runConfigOf(f, command, disk.entrypoint ?? [], mounts, process.env)));
    const io = imageIo(ctx.scope, f);
    const result = await runDisk(
      {
        disk: disk.path,
        memMiB: p.memMiB,
        cpus: p.cpus,
        timeoutMs: p.timeoutMs,
        publish: p.publish,
        runConfig: config,
        shares,
        ...(f.interactive && !f.tty ? { stdin: { socket: join(dir, 'stdin.sock'), source: process.stdin } } : {}),
        ...(f.tty ? { winsize: { socket: join(dir, 'winsize.sock'), source: windowSizes(ctx.scope) } } : {}),
        monitor: false,
        holdBoot: true,
        io,
      },
      ctx,
    );
    return { ...result, image: { ref: image, converted: disk.converted, key: disk.key ?? null } };
  } catch (e) {
    if (e instanceof InterruptedError || !isImg2vmError(e) || e.exitCode === RUN_FAILED) throw e;
    throw new Img2vmError(e.kind, e.message, e.hint, { cause: e, exitCode: RUN_FAILED });
  }
}
