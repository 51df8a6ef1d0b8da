// The img2vm command line: parses options, renders progress, maps errors to exit codes. The only place that prints or exits.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode, Img2vmError, InterruptedError, isImg2vmError } from '../core/errors.js';
import { reportLateSignals, withSignals } from './signals.js';
import { PACKAGE_ROOT } from '../core/paths.js';
import { convert, planImage, STAGES, type ConvertResult } from '../convert.js';
import { addConvertOptions } from './options.js';
import { conversionInput } from './config-file.js';
import { renderPlan } from './plan-render.js';
import { addVmCommands } from './vm-commands.js';
import { addBuildOptions, buildForConversion, type BuildFlags, type BuildSummary } from './build.js';
import type { Scope } from '../core/scope.js';
import { splitRunArgs } from './run-image.js';
import { addDoctorCommand } from './doctor.js';
import { addCacheCommand } from './cache.js';
import { VmTestError } from '../vm/test.js';
import { listrRenderer, plainRenderer, silentRenderer, type Renderer } from './render.js';
import { stderr, stdout, stdoutJson } from './print.js';

const IMAGE_HELP =
  'NAME[:TAG] (daemon, else registry), docker://REF, docker-daemon:REF, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE';

const VERSION = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface GlobalFlags {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

function pickRenderer(flags: GlobalFlags): Renderer & { fail?: (e: Error) => void } {
  if (flags.json || flags.quiet) return silentRenderer();
  // listr2 needs a real terminal width; a pty without one (script, some CI runners) gets plain lines.
  if (process.stderr.isTTY && !process.env.CI && (process.stderr.columns ?? 0) >= 40)
    return listrRenderer(STAGES, !!flags.verbose);
  return plainRenderer(!!flags.verbose);
}

function summary(r: ConvertResult): string {
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
  return [
    r.output !== null
      ? `wrote ${r.output} (${r.format}, ${mb(r.diskSize)} disk, ${mb(r.fileSize)} on disk)`
      : `pushed ${r.format} (${mb(r.diskSize)} disk, ${mb(r.fileSize)} qcow2), no file written`,
    `  boot ${r.bootMode} (${r.partitionTable}${r.bootloader ? `, ${r.bootloader}` : ''}), kernel ${r.kernelVersion ?? 'none'}${r.distribution ? `, ${r.distribution}` : ''}`,
    ...(r.pushed ? [`  pushed ${r.pushed.ref}@${r.pushed.digest}`] : []),
    `  total ${(r.timings.total / 1000).toFixed(1)}s`,
  ].join('\n');
}

/** What a finished conversion left, for an interruption that came too late to undo it. */
function completed(r: ConvertResult): string {
  if (r.output !== null) return `${r.output} was written`;
  return r.pushed ? `${r.pushed.ref} was pushed` : 'the conversion finished';
}

/** --builder also names img2vm build's Dockerfile builders. */
const BUILD_CHOICES = { builder: ['buildah'] };

/** Runs a conversion whose options come from input (which may build an image first, under the same signals and scope). */
async function runConvert(
  opts: GlobalFlags,
  input: (ctx: {
    signal: AbortSignal;
    scope: Scope;
  }) => Promise<{ options: Record<string, unknown> & { image: string }; build?: BuildSummary }>,
): Promise<void> {
  let build: BuildSummary | undefined;
  const renderer = pickRenderer(opts);
  let ok = false;
  try {
    const result = await withSignals(
      async ({ signal, scope }) => {
        const i = await input({ signal, scope });
        build = i.build;
        return convert(i.options, { sink: renderer.sink, signal, scope });
      },
      'still cleaning up; interrupt again to stop waiting',
      { late: (res, sig) => new InterruptedError(sig, { after: completed(res) }) },
    );
    reportLateSignals(completed(result));
    ok = true;
    await renderer.done(true);
    if (opts.json) stdoutJson(build ? { ...result, build } : result);
    else if (!opts.quiet) stderr(`${build ? `built ${build.id} with ${build.builder}\n` : ''}${summary(result)}\n`);
  } finally {
    if (!ok) await renderer.done(false);
  }
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('img2vm')
    .description('Turn a container image into a disk that boots in a virtual machine')
    .version(VERSION, '--version')
    .showHelpAfterError('(run img2vm --help for usage)')
    .exitOverride();

  const convertCmd = program
    .command('convert', { isDefault: true })
    .description('convert IMAGE into a bootable disk (the default command)')
    .argument('[image]', `${IMAGE_HELP}; or image: in --config`);
  addConvertOptions(convertCmd).action(async (image: string | undefined, opts: Record<string, unknown> & GlobalFlags) =>
    runConvert(opts, async () => ({ options: await conversionInput(image, opts) })),
  );

  const buildCmd = program
    .command('build')
    .description('build a Dockerfile (with docker or buildah) and convert the result into a bootable disk')
    .argument('[context]', 'the build context directory', '.');
  addBuildOptions(buildCmd);
  addConvertOptions(buildCmd, BUILD_CHOICES).action(
    async (context: string, opts: Record<string, unknown> & GlobalFlags & BuildFlags) =>
      runConvert(opts, async (ctx) => buildForConversion(context, opts, await conversionInput('build', opts), ctx)),
  );

  const planCmd = program
    .command('plan')
    .description(
      'print what a conversion would build (layout, file systems, boot loaders, guest files, steps) without writing a disk',
    )
    .argument('[image]', `${IMAGE_HELP}; or image: in --config; with --build, the build context`)
    .option('--build', 'plan `img2vm build`: build the Dockerfile of the context the argument names (default .)');
  addBuildOptions(planCmd);
  addConvertOptions(planCmd, BUILD_CHOICES).action(
    async (
      image: string | undefined,
      opts: Record<string, unknown> & GlobalFlags & BuildFlags & { build?: boolean },
    ) => {
      const p = await withSignals(async ({ signal, scope }) => {
        const input = opts.build
          ? (await buildForConversion(image, opts, await conversionInput('build', opts), { signal, scope })).options
          : await conversionInput(image, opts);
        return planImage(input, { signal, scope, sink: opts.verbose ? plainRenderer(true).sink : undefined });
      }, 'still cleaning up');
      if (opts.json) stdoutJson(p);
      else if (!opts.quiet) stdout(renderPlan(p));
    },
  );
  addVmCommands(program);
  addDoctorCommand(program);
  addCacheCommand(program);
  return program;
}

function report(e: unknown, json: boolean): number {
  if (e instanceof CommanderError) {
    return e.exitCode === 0 ? 0 : ExitCode.usage;
  }
  const err = isImg2vmError(e)
    ? e
    : new Img2vmError(
        'internal',
        `internal error: ${(e as Error)?.stack ?? String(e)}`,
        'this is a bug in img2vm; please report it with the command you ran',
      );
  // `img2vm test --json` has already printed its full report, failure included.
  if (json && !(e instanceof VmTestError)) {
    stdoutJson(
      { error: { kind: err.kind, message: err.message, hint: err.hint ?? null, exitCode: err.exitCode } },
      null,
    );
  }
  // The message and hint quote what the image, a registry or a tool said: escaped on the way out.
  stderr(`img2vm: error: ${err.message}\n`);
  if (err.hint) stderr(`  hint: ${err.hint}\n`);
  return err.exitCode;
}

/** `run` and `test` read their arguments as docker run does: after IMAGE, the first non-option starts the command (run-image.ts). */
function dockerStyleArgs(program: Command, argv: string[]): string[] {
  const sub = program.commands.find((c) => c.name() === argv[0]);
  if (!sub || (argv[0] !== 'run' && argv[0] !== 'test') || argv.includes('--help') || argv.includes('-h')) return argv;
  return [argv[0], ...splitRunArgs(sub, argv.slice(1))];
}

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  try {
    const program = buildProgram();
    await program.parseAsync(dockerStyleArgs(program, argv), { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    return report(e, json);
  }
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
