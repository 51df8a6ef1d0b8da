// `img2vm test`: boots a disk headless under QEMU and decides from the serial console whether it came up.
import type { EventSink } from '../core/events.js';
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Img2vmError, type ExitCodeName } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import { prepareMachine, startQemu, type Machine } from './machine.js';
import { TestSession, type End } from './test-session.js';
import { ARCH } from '../core/arch.js';
import type { Accel, Boot, DiskFormat, Firmware } from './qemu.js';

export const DEFAULT_TEST_TIMEOUT_MS = 300_000;
export const DEFAULT_MEM_MIB = 1024;
export const DEFAULT_CPUS = 2;

export interface TestOptions {
  disk: string;
  /** Forced by --uefi / --bios; detected from the partition table otherwise. */
  firmware?: Firmware;
  memMiB?: number;
  cpus?: number;
  /** For the whole test: boot, login and command. */
  timeoutMs?: number;
  /** Pass on this pattern instead of the readiness marker or a login prompt. */
  expect?: RegExp;
  /** A disk with img2vm's init passes when its workload exits with this status (0 without it). */
  expectExit?: number;
  login?: { user: string; password: string };
  /** Run after logging in; the test passes only if it exits 0. Needs login. */
  command?: string;
  /** Answers the initramfs's LUKS passphrase prompt. */
  luksPassphrase?: string;
  /** Where to save the console output (ANSI stripped, LF line ends). */
  logFile?: string;
  /** Fixes the command markers (tests); random otherwise. */
  nonce?: string;
  /** Fixes the boot nonce handed to the guest (tests); 16 random bytes otherwise. */
  bootNonce?: string;
  onEvent?: EventSink;
}

export interface VmContext {
  scope: Scope;
  signal?: AbortSignal;
}

/** Seconds since QEMU started. */
export interface Timings {
  firmware?: number;
  kernel?: number;
  init?: number;
  login?: number;
  marker?: number;
  ready?: number;
  /** The workload's exit line (disks with img2vm's init). */
  exit?: number;
  total: number;
}

export interface TestReport {
  passed: boolean;
  disk: string;
  format?: DiskFormat;
  firmware?: Boot;
  firmwareReason?: string;
  accel?: Accel;
  accelReason?: string;
  /** What made the guest count as up, or (exit) the workload's exit status that passed. */
  matched?: 'marker' | 'login' | 'expect' | 'exit';
  matchedLine?: string;
  kernelRelease?: string;
  timings: Timings;
  login?: { user: string; ok: boolean };
  command?: { command: string; exitCode: number | null; output: string };
  /** A disk with img2vm's init: the status its workload exited with, and the one the test expected. */
  workload?: { status: number | null; expected: number };
  log?: string;
  /** On failure: why, and the console lines before it. */
  reason?: string;
  lastLines?: string[];
  error?: { kind: ExitCodeName; message: string; exitCode: number };
}

/** A failed test: an ordinary Img2vmError (exit code by kind) that also carries the report for --json. */
export class VmTestError extends Img2vmError {
  constructor(
    kind: ExitCodeName,
    message: string,
    readonly report: TestReport,
    hint?: string,
  ) {
    super(kind, message, hint);
    report.error = { kind, message, exitCode: this.exitCode };
  }
}

const round = (ms: number | undefined) => (ms === undefined ? undefined : Math.round(ms / 10) / 100);

function checkOptions(o: TestOptions): void {
  if (o.command !== undefined && !o.login)
    throw new Img2vmError(
      'usage',
      '--run needs --login USER:PASSWORD',
      'e.g. --login root:secret --run "systemctl is-system-running"',
    );
  if (o.expectExit !== undefined && (!Number.isInteger(o.expectExit) || o.expectExit < 0 || o.expectExit > 255)) {
    throw new Img2vmError(
      'usage',
      `invalid --expect-exit ${o.expectExit}`,
      'an exit status is a whole number from 0 to 255',
    );
  }
  if (o.expectExit !== undefined && o.login)
    throw new Img2vmError(
      'usage',
      '--expect-exit does not go with --login',
      'a workload disk runs its workload, not a login',
    );
}

/** Keys in the order a reader of --json wants them; undefined ones are left out. */
function emptyReport(o: TestOptions): TestReport {
  return {
    passed: false,
    disk: resolve(o.disk),
    format: undefined,
    firmware: undefined,
    firmwareReason: undefined,
    accel: undefined,
    accelReason: undefined,
    matched: undefined,
    matchedLine: undefined,
    kernelRelease: undefined,
    timings: { total: 0 },
    login: undefined,
    command: undefined,
    workload: undefined,
    log: undefined,
  };
}

/** The console log; it is created before booting, so a log that cannot be written fails now rather than after minutes. */
async function openLog(
  o: TestOptions,
  report: TestReport,
  scope: Scope,
): Promise<{ stream: WriteStream; close: () => Promise<void> } | undefined> {
  if (!o.logFile) return undefined;
  report.log = resolve(o.logFile);
  await writeFile(report.log, '').catch((e: Error) => {
    throw new Img2vmError('usage', `cannot write the console log ${o.logFile}: ${e.message}`);
  });
  const stream = createWriteStream(report.log, { flags: 'a' });
  return { stream, close: scope.defer('close console log', () => new Promise<void>((r) => stream.end(r))) };
}

function describeMachine(report: TestReport, m: Machine): void {
  Object.assign(report, {
    disk: m.disk,
    format: m.format,
    firmware: m.firmware,
    firmwareReason: m.firmwareReason,
    accel: m.accel,
    accelReason: m.accelReason,
  });
}

/** What the session saw, into the report: timings, the match, the login, the command and the workload. */
function describeSession(report: TestReport, s: TestSession, o: TestOptions, totalMs: number): void {
  const m = s.watcher.milestones;
  report.timings = {
    firmware: round(m.firmware),
    kernel: round(m.kernel),
    init: round(m.init),
    login: round(m.login),
    marker: round(m.marker),
    ready: round(m.ready),
    exit: round(s.exitAt),
    total: round(totalMs)!,
  };
  report.kernelRelease = s.watcher.kernelRelease;
  const v = s.watcher.verdict;
  if (v?.status === 'ready') {
    report.matched = v.matched;
    report.matchedLine = v.line;
  }
  const out = s.sessionOutcome;
  if (s.session) report.login = { user: o.login!.user, ok: out !== undefined && out.status !== 'login-failed' };
  if (out?.status === 'done') report.command = { command: o.command!, exitCode: out.exitCode, output: out.output };
  if (s.workload.nonce !== undefined || o.expectExit !== undefined) {
    report.workload = { status: s.workload.status ?? null, expected: o.expectExit ?? 0 };
  }
}

/** Passes the report, or throws the failure it records. */
function conclude(report: TestReport, s: TestSession, end: End, o: TestOptions, ctx: VmContext): TestReport {
  const fail = (kind: ExitCodeName, message: string, hint?: string): never => {
    report.reason = message;
    report.lastLines = s.watcher.lastLines(20);
    throw new VmTestError(kind, message, report, hint);
  };
  if (!end.ok) {
    if (end.kind === 'interrupted') throw ctx.signal?.reason ?? new Img2vmError('interrupted', end.message);
    return fail(end.kind, end.message, end.hint);
  }
  const out = s.sessionOutcome;
  if (out?.status === 'login-failed')
    return fail('loginFailed', out.reason, 'check --login against the --password the disk was converted with');
  if (out?.status === 'done' && out.exitCode !== 0)
    return fail('commandFailed', `the command exited with status ${out.exitCode}: ${o.command}`);
  if (report.matched === undefined && s.workload.exited) {
    report.matched = 'exit';
    report.matchedLine = `img2vm-exit: status=${s.workload.status}`;
  }
  report.passed = true;
  return report;
}

export async function testDisk(o: TestOptions, ctx: VmContext): Promise<TestReport> {
  checkOptions(o);
  const report = emptyReport(o);
  const log = await openLog(o, report, ctx.scope);
  // Fresh for each boot, so nothing written into the disk beforehand, or printed in another boot, can carry it.
  const bootNonce = o.bootNonce ?? randomBytes(16).toString('hex');
  const machine = await prepareMachine(
    {
      disk: o.disk,
      firmware: o.firmware,
      memMiB: o.memMiB ?? DEFAULT_MEM_MIB,
      cpus: o.cpus ?? DEFAULT_CPUS,
      snapshot: true,
      publish: [],
      console: 'pipe',
      bootNonce,
    },
    ctx.scope,
  );
  describeMachine(report, machine);
  o.onEvent?.({ type: 'vm-machine', stage: 'vm', machine });
  ctx.signal?.throwIfAborted();

  const qemu = startQemu(machine, ctx.scope);
  const session = new TestSession(qemu, {
    timeoutMs: o.timeoutMs ?? DEFAULT_TEST_TIMEOUT_MS,
    expect: o.expect,
    expectExit: o.expectExit,
    login: o.login,
    command: o.command,
    ...(o.luksPassphrase !== undefined ? { luksPassphrase: o.luksPassphrase } : {}),
    nonce: o.nonce ?? randomBytes(4).toString('hex'),
    bootNonce,
    argv: [ARCH[machine.arch].qemu, ...machine.argv],
    log: log?.stream,
    onEvent: o.onEvent,
  });
  const end = await session.run(ctx.signal);
  const totalMs = session.now();
  await qemu.stop();
  await log?.close();
  describeSession(report, session, o, totalMs);
  return conclude(report, session, end, o, ctx);
}
