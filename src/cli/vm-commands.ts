// The `run` and `test` subcommands: option parsing, signal handling, the terminal and output for the vm stage.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { Img2vmError } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import { parseLogin } from '../vm/login.js';
import { parseCpus, parseMem, parseTimeout, type Firmware } from '../vm/qemu.js';
import { parsePublishFlag } from '../vm/run-config.js';
import { addRunImageOptions, imageOnlyFlags, runImageAction, testImageAction } from './run-image-command.js';
import { isDiskTarget, type RunImageFlags } from './run-image.js';
import { runDisk, type RunIo } from '../vm/run.js';
import { withVmSignals } from './vm-signals.js';
import type { Img2vmEvent, MachineSummary } from '../core/events.js';
import { DEFAULT_TEST_TIMEOUT_MS, testDisk, VmTestError, type TestReport } from '../vm/test.js';
import { CrlfToLf, plainLine } from '../vm/workload.js';
import { stderr, stdout, stdoutJson } from './print.js';

/**
 * The user's terminal as the guest's console: keystrokes go to the guest raw (Ctrl-C included, so it reaches the
 * workload), console bytes come back; into a file or pipe, CR LF becomes LF. img2vm's own lines go to stderr
 * with -v. The terminal is restored by the scope.
 */
function terminalIo(scope: Scope, verbose: boolean): RunIo {
  const stdin = process.stdin;
  const terminal = stdin.isTTY === true;
  if (terminal) {
    stdin.setRawMode(true);
    scope.defer('restore the terminal', () => stdin.setRawMode(false));
  }
  scope.defer('stop reading the terminal', () => {
    stdin.pause();
    if ('unref' in stdin && typeof stdin.unref === 'function') stdin.unref();
  });
  const lf = process.stdout.isTTY ? undefined : new CrlfToLf();
  // The guest's console itself is the one output not escaped: it is the VM's terminal, as `docker run` gives a container its own.
  if (lf) scope.defer('flush the console', () => process.stdout.write(lf.end()));
  return {
    input: stdin,
    terminal,
    output: (b) => process.stdout.write(lf ? lf.push(b) : b),
    // These lines are re-emitted on img2vm's stderr (boot text of a workload disk among them): colours dropped, the rest escaped.
    own: verbose ? (line) => stderr(`${plainLine(line)}\n`) : undefined,
  };
}

function firmwareFlag(opts: { uefi?: boolean; bios?: boolean }): Firmware | undefined {
  return opts.uefi ? 'uefi' : opts.bios ? 'bios' : undefined;
}

function describe(m: MachineSummary): string {
  return `${m.disk} (${m.format}, ${m.firmware.toUpperCase()}: ${m.firmwareReason}; ${m.accel.toUpperCase()}: ${m.accelReason})`;
}

function parseExpect(text: string): RegExp {
  try {
    return new RegExp(text);
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `invalid --expect regex: ${(e as Error).message}`,
      'a JavaScript regular expression, matched against each console line',
    );
  }
}

const seconds = (s: number | undefined) => (s === undefined ? '-' : `${s.toFixed(1)} s`);

function summary(r: TestReport): string {
  const t = r.timings;
  const what =
    r.matched === 'marker'
      ? `readiness marker (kernel ${r.kernelRelease ?? '?'})`
      : r.matched === 'login'
        ? 'login prompt'
        : `--expect match "${r.matchedLine ?? ''}"`;
  const lines = [
    `passed: ${what} after ${seconds(t.ready)}`,
    `  firmware ${seconds(t.firmware)} → kernel ${seconds(t.kernel)} → init ${seconds(t.init)} → ready ${seconds(t.ready)} (total ${seconds(t.total)})`,
  ];
  if (r.matched === 'exit')
    lines[0] = `passed: the workload exited with status ${r.workload?.status} after ${seconds(t.exit)}`;
  if (r.command) lines.push(`  command exited 0: ${r.command.command}`);
  else if (r.login?.ok) lines.push(`  logged in as ${r.login.user}`);
  return lines.join('\n');
}

interface TestFlags {
  timeout: string;
  expect?: string;
  expectExit?: string;
  login?: string;
  run?: string;
  luksPassword?: string;
  luksPasswordFile?: string;
  log?: string;
  uefi?: boolean;
  bios?: boolean;
  mem: string;
  cpus: string;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

interface RunFlags {
  timeout?: string;
  luksPassword?: string;
  luksPasswordFile?: string;
  mem: string;
  cpus: string;
  publish: string[];
  persist?: boolean;
  uefi?: boolean;
  bios?: boolean;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

function parseExitStatus(text: string): number {
  const n = Number(text);
  if (!/^\d{1,3}$/.test(text.trim()) || n > 255)
    throw new Img2vmError('usage', `invalid --expect-exit "${text}"`, 'an exit status is a whole number from 0 to 255');
  return n;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/** What `img2vm test` shows while it runs: the machine, milestones and phases, or with -v the console itself. */
function testEvents(f: TestFlags, user: string | undefined): (e: Img2vmEvent) => void {
  const err = stderr;
  const chatty = !f.json && !f.quiet;
  return (e) => {
    if (!chatty) return;
    if (e.type === 'vm-machine') err(`img2vm: testing ${describe(e.machine)}\n`);
    else if (e.type === 'vm-console' && f.verbose) err(e.text);
    else if (e.type === 'vm-milestone' && !f.verbose) err(`img2vm: ${e.name} at ${seconds(e.seconds)}\n`);
    else if (e.type === 'vm-phase' && !f.verbose)
      err(`img2vm: ${e.phase === 'login' ? `logging in as ${user}` : 'running the command'}\n`);
    else if (e.type === 'log' && (e.level === 'warn' || f.verbose)) err(`img2vm: ${e.message}\n`);
  };
}

async function runAction(disk: string, command: string[], f: RunFlags & RunImageFlags): Promise<void> {
  const imageOnly = imageOnlyFlags(f, command);
  if (imageOnly)
    throw new Img2vmError(
      'usage',
      `${imageOnly} is for img2vm run IMAGE, not a disk`,
      'run an image to give a run its own settings',
    );
  const opts = {
    disk,
    firmware: firmwareFlag(f),
    memMiB: parseMem(f.memory ?? f.mem),
    cpus: parseCpus(f.cpus),
    timeoutMs: f.timeout !== undefined ? parseTimeout(f.timeout) : undefined,
    publish: f.publish.map(parsePublishFlag),
    persist: Boolean(f.persist),
    ...luksAnswer(f),
  };
  const result = await withVmSignals((ctx) => {
    const io = terminalIo(ctx.scope, Boolean(f.verbose));
    return runDisk(
      {
        ...opts,
        io,
        onStart: (m) => {
          if (f.quiet || f.json) return;
          stderr(`img2vm: booting ${describe(m)}\n`);
          for (const p of opts.publish) stderr(`img2vm: ${p.address}:${p.host} → guest port ${p.guest}\n`);
          const quit = io.terminal ? 'Ctrl-a x quits' : 'SIGINT or SIGTERM sends ^C to the guest, then stops it';
          stderr(
            `img2vm: ${opts.persist ? 'writes go to the disk' : 'writes are discarded (--persist keeps them)'}; ${quit}\n`,
          );
        },
      },
      ctx,
    );
  });
  if (f.json) stdoutJson(result);
  // Like `docker run`: the workload's status is img2vm's.
  if (result.workload) process.exitCode = result.workload.status;
}

/** The passphrase to type at the initramfs's prompt: given, or the file's content without its one trailing newline. */
function luksAnswer(f: { luksPassword?: string; luksPasswordFile?: string }): { luksPassphrase?: string } {
  if (f.luksPassword !== undefined) return { luksPassphrase: f.luksPassword };
  if (f.luksPasswordFile === undefined) return {};
  try {
    return { luksPassphrase: readFileSync(f.luksPasswordFile, 'utf8').replace(/\r?\n$/, '') };
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `cannot read --luks-password-file ${f.luksPasswordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      'give the file holding the passphrase',
    );
  }
}

async function testAction(disk: string, f: TestFlags): Promise<void> {
  const login = f.login !== undefined ? parseLogin(f.login) : undefined;
  if (f.login !== undefined && !login) {
    throw new Img2vmError(
      'usage',
      `invalid --login "${f.login}"`,
      'use USER:PASSWORD, e.g. --login root:secret (root: for an empty password)',
    );
  }
  if (f.run !== undefined && !login) throw new Img2vmError('usage', '--run needs --login USER:PASSWORD');
  const chatty = !f.json && !f.quiet;
  const err = stderr;
  const onEvent = testEvents(f, login?.user);
  try {
    const report = await withVmSignals((ctx) =>
      testDisk(
        {
          disk,
          firmware: firmwareFlag(f),
          memMiB: parseMem(f.mem),
          cpus: parseCpus(f.cpus),
          timeoutMs: parseTimeout(f.timeout),
          expect: f.expect !== undefined ? parseExpect(f.expect) : undefined,
          expectExit: f.expectExit !== undefined ? parseExitStatus(f.expectExit) : undefined,
          login,
          command: f.run,
          ...luksAnswer(f),
          logFile: f.log,
          onEvent,
        },
        ctx,
      ),
    );
    if (f.json) {
      stdoutJson(report);
      return;
    }
    if (report.command?.output) stdout(`${report.command.output}\n`);
    if (chatty) err(`${summary(report)}\n`);
  } catch (e) {
    if (e instanceof VmTestError) {
      const r = e.report;
      if (f.json) stdoutJson(r);
      else {
        if (r.command?.output) stdout(`${r.command.output}\n`);
        if (!f.quiet && !f.verbose && r.lastLines?.length)
          err(`img2vm: last console lines:\n${r.lastLines.map((l) => `  | ${l}\n`).join('')}`);
        if (!f.quiet && r.log) err(`img2vm: console log: ${r.log}\n`);
      }
    }
    throw e;
  }
}

/** run IMAGE and test IMAGE convert without encryption: a passphrase for them is a mistake to say, not to ignore. */
function refuseLuksForImage(cmd: 'run' | 'test', f: { luksPassword?: string; luksPasswordFile?: string }): void {
  if (f.luksPassword === undefined && f.luksPasswordFile === undefined) return;
  throw new Img2vmError(
    'usage',
    `--luks-password is for img2vm ${cmd} DISK, not an image`,
    `img2vm ${cmd} IMAGE converts without encryption; convert with --luks-password, then ${cmd} the disk`,
  );
}

/** --luks-password and --luks-password-file, as run and test take them. */
function luksOptions(cmd: Command, help: string): void {
  cmd
    .addOption(new Option('--luks-password <pass>', help).conflicts('luksPasswordFile'))
    .option('--luks-password-file <file>', 'DISK: as --luks-password, the passphrase read from FILE');
}

export function addVmCommands(program: Command): void {
  const run = program
    .command('run')
    .description(
      "boot DISK in QEMU with its serial console on this terminal (Ctrl-a x quits), or run IMAGE as docker run does: converted once into img2vm's cache, booted with this run's command, environment, ports and volumes, the cached disk never written; the workload's exit status is img2vm's",
    )
    .argument(
      '<disk-or-image>',
      'a disk written by img2vm (raw, qcow2, vmdk, vhdx, vhd, vdi), or the NAME.ext4 or NAME.firecracker.json of --format rootfs; anything else is an image reference (NAME[:TAG], docker://, oci:, oci-archive:, docker-archive:, docker-daemon:)',
    )
    .argument(
      '[command...]',
      'IMAGE only: the command and its arguments (everything after IMAGE that is not an option; -- ends the options)',
    )
    .option('--timeout <seconds>', 'stop QEMU after this many seconds');
  addRunImageOptions(run);
  luksOptions(
    run,
    'DISK: type PASS when the guest asks for the LUKS passphrase, then hand the console over (a wrong one fails)',
  );
  run
    .option('--mem <size>', 'guest memory, e.g. 1024M or 2G (-m, --memory)', '1024M')
    .option('--cpus <n>', 'virtual CPUs (a fraction is rounded up)', '2')
    .option(
      '-p, --publish <[address:]host:guest>',
      'forward TCP port HOST on 127.0.0.1 (or ADDRESS) to the guest port GUEST (repeatable)',
      collect,
      [],
    )
    .addOption(new Option('--snapshot', "DISK: discard the guest's writes (the default)").conflicts('persist'))
    .option('--persist', 'DISK: let the guest write to DISK')

    .addOption(
      new Option('--uefi', 'DISK: boot with UEFI firmware (OVMF), whatever the partition table says').conflicts('bios'),
    )
    .option('--bios', 'DISK: boot with BIOS firmware (SeaBIOS), whatever the partition table says')
    .option('--json', 'print one JSON result object when QEMU has exited')
    .option('-q, --quiet', 'print nothing but errors (and the console)')
    .option('--verbose', "also show img2vm's own console lines (its init's) on stderr")
    .action(async (target: string, command: string[], f: RunFlags & RunImageFlags) => {
      if (isDiskTarget(target)) return runAction(target, command, f);
      refuseLuksForImage('run', f);
      return runImageAction(target, command, f);
    });

  const test = program
    .command('test')
    .description(
      'boot DISK headless and pass when the guest is up (readiness marker or login prompt), or when its workload exits 0; IMAGE runs as img2vm run does (the same flags) and passes when its workload exits 0 (--expect-exit N)',
    )
    .argument(
      '<disk-or-image>',
      'a disk written by img2vm (raw, qcow2, vmdk, vhdx, vhd, vdi), or the NAME.ext4 or NAME.firecracker.json of --format rootfs; anything else is an image reference',
    )
    .argument('[command...]', 'IMAGE only: the command and its arguments')
    .option('--timeout <seconds>', 'fail if the test has not passed by then', String(DEFAULT_TEST_TIMEOUT_MS / 1000))
    .option('--expect <regex>', 'DISK: pass when a console line matches REGEX instead')
    .option('--expect-exit <status>', "pass when the workload (img2vm's init) exits with STATUS (default 0)")
    .option('--login <user:password>', 'DISK: log in on the serial console (an empty password: "root:")')
    .option('--run <command>', 'DISK: after --login, run COMMAND; pass only if it exits 0')
    .option('--log <file>', 'DISK: save the console output to FILE');
  luksOptions(test, "DISK: type PASS when the guest's initramfs asks for the LUKS passphrase");
  addRunImageOptions(test);
  test
    .option(
      '-p, --publish <[address:]host:guest>',
      'IMAGE: forward TCP port HOST on 127.0.0.1 (or ADDRESS) to the guest port GUEST (repeatable)',
      collect,
      [],
    )
    .addOption(
      new Option('--uefi', 'DISK: boot with UEFI firmware (OVMF), whatever the partition table says').conflicts('bios'),
    )
    .option('--bios', 'DISK: boot with BIOS firmware (SeaBIOS), whatever the partition table says')
    .option('--mem <size>', 'guest memory, e.g. 1024M or 2G (-m, --memory)', '1024M')
    .option('--cpus <n>', 'virtual CPUs', '2')
    .option('--json', 'print one JSON result object (timings, match, command output)')
    .option('-q, --quiet', 'print nothing but errors and the command output')
    .option('--verbose', 'show the serial console while the guest boots')
    .action(async (target: string, command: string[], f: TestFlags & RunImageFlags) => {
      if (!isDiskTarget(target)) {
        refuseLuksForImage('test', f);
        return testImageAction(target, command, f);
      }
      const imageOnly = imageOnlyFlags(f, command) ?? (f.publish.length ? '-p/--publish' : undefined);
      if (imageOnly)
        throw new Img2vmError(
          'usage',
          `${imageOnly} is for img2vm test IMAGE, not a disk`,
          'test an image to give the run its own settings',
        );
      return testAction(target, { ...f, mem: f.memory ?? f.mem });
    });
}
