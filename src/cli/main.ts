// The img2vm command line: parses options, renders progress, maps errors to exit codes. The only place that prints or exits.
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BOOT_MODES, BOOTLOADERS, BUILDERS } from '../core/config.js';
import { ExitCode, Img2vmError, isImg2vmError } from '../core/errors.js';
import { withSignals } from './signals.js';
import { PACKAGE_ROOT } from '../core/paths.js';
import { parseSize } from '../core/units.js';
import { formatIds } from '../output/index.js';
import { convert, STAGES, type ConvertResult } from '../pipeline.js';
import { addVmCommands } from './vm-commands.js';
import { addDoctorCommand } from './doctor.js';
import { VmTestError } from '../vm/test.js';
import { listrRenderer, plainRenderer, silentRenderer, type Renderer } from './render.js';

const VERSION = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface GlobalFlags {
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

function pickRenderer(flags: GlobalFlags): Renderer & { fail?: (e: Error) => void } {
  if (flags.json || flags.quiet) return silentRenderer();
  // listr2 needs a real terminal width; a pty without one (script, some CI runners) gets plain lines.
  if (process.stderr.isTTY && !process.env.CI && (process.stderr.columns ?? 0) >= 40) return listrRenderer(STAGES, !!flags.verbose);
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

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('img2vm')
    .description('Turn a container image into a disk that boots in a virtual machine')
    .version(VERSION, '--version')
    .showHelpAfterError('(run img2vm --help for usage)')
    .exitOverride();

  program
    .command('convert', { isDefault: true })
    .description('convert IMAGE into a bootable disk (the default command)')
    .argument('<image>', 'NAME[:TAG] (daemon, else registry), docker://REF, docker-daemon:REF, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE')
    .option('-o, --output <file>', 'the disk to write; format from the extension unless --format (not needed with --push)')
    .addOption(new Option('--format <format>', 'output format').choices(formatIds()))
    .option('--size <size>', 'disk size, e.g. 4G (default: content plus headroom)')
    .addOption(new Option('--boot <mode>', 'firmware the disk boots with (hybrid: both BIOS and UEFI)').choices([...BOOT_MODES]).default('hybrid'))
    .addOption(new Option('--bootloader <name>', 'UEFI boot loader (systemd-boot needs --boot uefi)').choices([...BOOTLOADERS]).default('grub'))
    .addOption(new Option('--partition-table <kind>', 'partition table (default: mbr for --boot bios, gpt otherwise)').choices(['mbr', 'gpt']))
    .option('--boot-partition <size>', 'a separate ext4 /boot partition of this size, e.g. 512M')
    .option('--password <pass>', 'root password (otherwise root has no password login)')
    .option('--hostname <name>', 'guest hostname (default: from the image name)')
    .addOption(new Option('--builder <builder>', 'what runs the guest recipe').choices([...BUILDERS]).default('auto'))
    .option('--raw', 'the image already has a kernel and init: install nothing', false)
    .option('--kernel-cmdline <args>', 'appended to the kernel command line')
    .option('--compress', 'compress qcow2 output', false)
    .option('--seed <seed>', 'fixes UUIDs and every other random choice')
    .addOption(new Option('--pull <policy>', 'when to pull from the registry, as docker spells it').choices(['always', 'missing', 'never']).default('missing'))
    .option('--platform <os/arch>', 'which image of a multi-platform index (default: the host\'s)')
    .option('--insecure-registry <host>', 'reach this registry over plain HTTP (repeatable; loopback registries always are)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--push <ref>', 'push the containerDisk image to this registry (REGISTRY/REPO:TAG); with -o also keep the archive')
    .option('--json', 'print one JSON result object')
    .option('-q, --quiet', 'print nothing but errors')
    .option('-v, --verbose', 'show build output and details')
    .action(async (image: string, opts: Record<string, unknown> & GlobalFlags) => {
      const renderer = pickRenderer(opts);
      let ok = false;
      try {
        const result = await withSignals(({ signal, scope }) =>
          convert(
            {
              image,
              output: opts.output as string | undefined,
              format: opts.format as string | undefined,
              size: opts.size ? parseSize(String(opts.size)) : undefined,
              boot: opts.boot as 'bios',
              bootloader: opts.bootloader as 'grub',
              partitionTable: opts.partitionTable as 'mbr' | 'gpt' | undefined,
              bootPartition: opts.bootPartition ? parseSize(String(opts.bootPartition)) : undefined,
              password: opts.password as string | undefined,
              hostname: opts.hostname as string | undefined,
              builder: opts.builder as 'auto',
              raw: Boolean(opts.raw),
              kernelCmdline: opts.kernelCmdline as string | undefined,
              compress: Boolean(opts.compress),
              seed: opts.seed as string | undefined,
              pull: opts.pull as 'missing',
              platform: opts.platform as string | undefined,
              insecureRegistries: opts.insecureRegistry as string[],
              push: opts.push as string | undefined,
            },
            { sink: renderer.sink, signal, scope },
          ),
          'still cleaning up; interrupt again to stop waiting',
        );
        ok = true;
        await renderer.done(true);
        if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        else if (!opts.quiet) process.stderr.write(`${summary(result)}\n`);
      } finally {
        if (!ok) await renderer.done(false);
      }
    });
  addVmCommands(program);
  addDoctorCommand(program);
  return program;
}

function report(e: unknown, json: boolean): number {
  if (e instanceof CommanderError) {
    return e.exitCode === 0 ? 0 : ExitCode.usage;
  }
  const err = isImg2vmError(e)
    ? e
    : new Img2vmError('internal', `internal error: ${(e as Error)?.stack ?? String(e)}`, 'this is a bug in img2vm; please report it with the command you ran');
  // `img2vm test --json` has already printed its full report, failure included.
  if (json && !(e instanceof VmTestError)) {
    process.stdout.write(`${JSON.stringify({ error: { kind: err.kind, message: err.message, hint: err.hint ?? null, exitCode: err.exitCode } })}\n`);
  }
  process.stderr.write(`img2vm: error: ${err.message}\n`);
  if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
  return err.exitCode;
}

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    return report(e, json);
  }
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
