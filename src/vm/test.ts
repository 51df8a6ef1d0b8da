// `img2vm test`: boots a disk headless under QEMU and decides from the serial console whether it came up.
import type { EventSink, Img2vmEvent } from '../core/events.js';
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Img2vmError, type ExitCodeName } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import { ConsoleWatcher, type Milestone } from './console.js';
import { LoginSession, type SessionOutcome } from './login.js';
import { prepareMachine, startQemu } from './machine.js';
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
  login?: { user: string; password: string };
  /** Run after logging in; the test passes only if it exits 0. Needs login. */
  command?: string;
  /** Where to save the console output (ANSI stripped, LF line ends). */
  logFile?: string;
  /** Fixes the command markers (tests); random otherwise. */
  nonce?: string;
  onEvent?: EventSink;
}

export interface VmContext {
  scope: Scope;
  signal?: AbortSignal;
}

/** What `img2vm test` reports as it goes: the machine, boot milestones, console text and login phases. */
export type VmEvent = Extract<Img2vmEvent, { stage: 'vm' }>;

/** Seconds since QEMU started. */
export interface Timings {
  firmware?: number;
  kernel?: number;
  init?: number;
  login?: number;
  marker?: number;
  ready?: number;
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
  /** What made the guest count as up. */
  matched?: 'marker' | 'login' | 'expect';
  matchedLine?: string;
  kernelRelease?: string;
  timings: Timings;
  login?: { user: string; ok: boolean };
  command?: { command: string; exitCode: number | null; output: string };
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

type End = { ok: true } | { ok: false; kind: ExitCodeName; message: string; hint?: string };

export async function testDisk(o: TestOptions, ctx: VmContext): Promise<TestReport> {
  if (o.command !== undefined && !o.login) throw new Img2vmError('usage', '--run needs --login USER:PASSWORD', 'e.g. --login root:secret --run "systemctl is-system-running"');
  const timeoutMs = o.timeoutMs ?? DEFAULT_TEST_TIMEOUT_MS;
  // Keys in the order a reader of --json wants them; undefined ones are left out.
  const report: TestReport = {
    passed: false, disk: resolve(o.disk), format: undefined, firmware: undefined, firmwareReason: undefined,
    accel: undefined, accelReason: undefined, matched: undefined, matchedLine: undefined, kernelRelease: undefined,
    timings: { total: 0 }, login: undefined, command: undefined, log: undefined,
  };
  let log: WriteStream | undefined;
  let closeLog: (() => Promise<void>) | undefined;
  if (o.logFile) {
    report.log = resolve(o.logFile);
    // Fail before booting, not after minutes, when the log cannot be written.
    await writeFile(report.log, '').catch((e: Error) => {
      throw new Img2vmError('usage', `cannot write the console log ${o.logFile}: ${e.message}`);
    });
    const stream = createWriteStream(report.log, { flags: 'a' });
    log = stream;
    closeLog = ctx.scope.defer('close console log', () => new Promise<void>((r) => stream.end(r)));
  }

  const machine = await prepareMachine(
    { disk: o.disk, firmware: o.firmware, memMiB: o.memMiB ?? DEFAULT_MEM_MIB, cpus: o.cpus ?? DEFAULT_CPUS, snapshot: true, publish: [], console: 'pipe' },
    ctx.scope,
  );
  Object.assign(report, {
    disk: machine.disk, format: machine.format, firmware: machine.firmware, firmwareReason: machine.firmwareReason,
    accel: machine.accel, accelReason: machine.accelReason,
  });
  o.onEvent?.({ type: 'vm-machine', stage: 'vm', machine });
  ctx.signal?.throwIfAborted();

  const watcher = new ConsoleWatcher({ expect: o.expect, until: o.login && !o.expect ? 'login' : 'ready' });
  const session = o.login
    ? new LoginSession({ ...o.login, command: o.command, nonce: o.nonce ?? randomBytes(4).toString('hex') })
    : undefined;
  let sessionOutcome: SessionOutcome | undefined;
  let phase: 'boot' | 'wait-login' | 'login' | 'command' = 'boot';
  const emitted = new Set<Milestone>();

  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const qemu = startQemu(machine, ctx.scope);
  const { child } = qemu;
  // QEMU may exit while we type; the exit is reported on its own, the broken pipe is not news.
  child.stdin?.on('error', () => undefined);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });

  const end = await new Promise<End>((resolveEnd) => {
    let done = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = (e: End) => {
      if (done) return;
      done = true;
      timers.forEach((t) => clearTimeout(t));
      ctx.signal?.removeEventListener('abort', onAbort);
      resolveEnd(e);
    };
    const type = (s: string) => child.stdin?.write(s);

    const startLogin = () => {
      phase = 'login';
      o.onEvent?.({ type: 'vm-phase', stage: 'vm', phase: 'login' });
      type(session!.start());
    };
    const afterVerdict = () => {
      const v = watcher.verdict;
      if (!v || phase !== 'boot') return;
      if (v.status === 'failed') return finish({ ok: false, kind: 'kernelPanic', message: `boot failed: ${v.reason}` });
      if (!session) return finish({ ok: true });
      phase = 'wait-login';
      if (watcher.milestones.login !== undefined) startLogin();
    };
    const emitMilestones = () => {
      for (const [name, at] of Object.entries(watcher.milestones) as [Milestone, number][]) {
        if (emitted.has(name)) continue;
        emitted.add(name);
        o.onEvent?.({ type: 'vm-milestone', stage: 'vm', name, seconds: round(at)! });
      }
    };

    child.stdout?.on('data', (chunk: Buffer) => {
      if (done) return;
      const text = watcher.feed(chunk, now());
      log?.write(text);
      if (text) o.onEvent?.({ type: 'vm-console', stage: 'vm', text });
      emitMilestones();
      if (phase === 'boot') return afterVerdict();
      if (phase === 'wait-login') {
        if (watcher.milestones.login !== undefined) startLogin();
        return;
      }
      const step = session!.feed(text);
      if (step.write) type(step.write);
      if (session!.phase === 'command' && phase === 'login') {
        phase = 'command';
        o.onEvent?.({ type: 'vm-phase', stage: 'vm', phase: 'command' });
      }
      if (step.outcome) {
        sessionOutcome = step.outcome;
        finish({ ok: true });
      }
    });

    const ticker = setInterval(() => {
      if (phase !== 'boot') return;
      watcher.tick(now());
      emitMilestones();
      afterVerdict();
    }, 250);
    timers.push(ticker);

    timers.push(
      setTimeout(() => {
        const s = timeoutMs / 1000;
        const last = watcher.lastLines(1)[0];
        const tail = last ? `; last console line: ${last.trim()}` : '; the console stayed silent';
        if (phase === 'login' || phase === 'wait-login') {
          finish({ ok: false, kind: 'loginFailed', message: `logging in as ${o.login!.user} did not finish within ${s} s${tail}` });
        } else if (phase === 'command') {
          finish({ ok: false, kind: 'testTimeout', message: `the command did not finish within ${s} s${tail}` });
        } else {
          const what = o.expect ? `no console line matched /${o.expect.source}/` : 'no readiness marker or login prompt';
          finish({ ok: false, kind: 'testTimeout', message: `${what} within ${s} s${tail}` });
        }
      }, timeoutMs),
    );

    const onAbort = () => finish({ ok: false, kind: 'interrupted', message: String((ctx.signal?.reason as Error)?.message ?? 'interrupted') });
    if (ctx.signal?.aborted) onAbort();
    ctx.signal?.addEventListener('abort', onAbort, { once: true });

    // execa settles after stdout has been drained, so a failure printed just before QEMU exits is seen first.
    void child.then((r) => {
      if (done) return;
      afterVerdict();
      if (done) return;
      if (r.exitCode !== 0) {
        const why = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !/warning:/.test(l)).pop();
        return finish({
          ok: false, kind: 'qemuFailed',
          message: `QEMU failed (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`})${why ? `: ${why}` : ''}`,
          hint: `command: qemu-system-x86_64 ${machine.argv.join(' ')}`,
        });
      }
      const last = watcher.lastLines(1)[0]?.trim();
      const ending = last ? ` (last console line: ${last})` : '';
      if (phase === 'boot' || phase === 'wait-login') {
        return finish({ ok: false, kind: 'kernelPanic', message: `boot failed: the guest reset or powered off before it was up${ending}` });
      }
      finish({ ok: false, kind: phase === 'login' ? 'loginFailed' : 'commandFailed', message: `the guest reset or powered off during the ${phase}${ending}` });
    });
  });
  const totalMs = now();
  await qemu.stop();
  await closeLog?.();

  const m = watcher.milestones;
  report.timings = {
    firmware: round(m.firmware), kernel: round(m.kernel), init: round(m.init), login: round(m.login),
    marker: round(m.marker), ready: round(m.ready), total: round(totalMs)!,
  };
  report.kernelRelease = watcher.kernelRelease;
  const v = watcher.verdict;
  if (v?.status === 'ready') {
    report.matched = v.matched;
    report.matchedLine = v.line;
  }
  if (session) report.login = { user: o.login!.user, ok: sessionOutcome !== undefined && sessionOutcome.status !== 'login-failed' };
  if (sessionOutcome?.status === 'done') report.command = { command: o.command!, exitCode: sessionOutcome.exitCode, output: sessionOutcome.output };

  const fail = (kind: ExitCodeName, message: string, hint?: string): never => {
    report.reason = message;
    report.lastLines = watcher.lastLines(20);
    throw new VmTestError(kind, message, report, hint);
  };
  if (!end.ok) {
    if (end.kind === 'interrupted') throw ctx.signal?.reason ?? new Img2vmError('interrupted', end.message);
    return fail(end.kind, end.message, end.hint);
  }
  if (sessionOutcome?.status === 'login-failed') return fail('loginFailed', sessionOutcome.reason, 'check --login against the --password the disk was converted with');
  if (sessionOutcome?.status === 'done' && sessionOutcome.exitCode !== 0) {
    return fail('commandFailed', `the command exited with status ${sessionOutcome.exitCode}: ${o.command}`);
  }
  report.passed = true;
  return report;
}
