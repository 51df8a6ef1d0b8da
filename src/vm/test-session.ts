// One `img2vm test` boot as a state machine over the serial console: boot, login, command, or the workload's exit.
import type { WriteStream } from 'node:fs';
import type { EventSink } from '../core/events.js';
import type { ExitCodeName } from '../core/errors.js';
import { BOOT_NONCE_PREFIX, ConsoleWatcher, type Milestone } from './console.js';
import { LoginSession, type SessionOutcome } from './login.js';
import type { ConsoleProcess } from './machine.js';
import { WorkloadConsole } from './workload.js';
import { LuksPrompt } from './luks-prompt.js';

export type End = { ok: true } | { ok: false; kind: ExitCodeName; message: string; hint?: string };

export interface TestSessionOptions {
  timeoutMs: number;
  expect?: RegExp;
  /** Pass only when the workload of img2vm's init exits with this status. */
  expectExit?: number;
  login?: { user: string; password: string };
  command?: string;
  /** Typed when the initramfs asks for the LUKS passphrase (never logged: the prompt does not echo it). */
  luksPassphrase?: string;
  nonce: string;
  /**
   * The boot nonce handed to the guest (qemu.ts): readiness lines and img2vm's init line are believed only with it,
   * so nothing canned in the image or printed early can pass the test.
   */
  bootNonce: string;
  /** The QEMU command line with the program first, for the hint of a QEMU failure. */
  argv: readonly string[];
  log?: WriteStream;
  onEvent?: EventSink;
}

type Phase = 'boot' | 'wait-login' | 'login' | 'command';

const round = (ms: number) => Math.round(ms / 10) / 100;

/**
 * Feeds the console to the watcher (milestones, failures, readiness), to img2vm's exit protocol and, once the
 * guest is up, to the login session; decides when the test is over. Every timer and listener is gone when
 * run() resolves.
 */
export class TestSession {
  readonly watcher: ConsoleWatcher;
  readonly workload: WorkloadConsole;
  readonly session: LoginSession | undefined;
  sessionOutcome: SessionOutcome | undefined;
  /** Milliseconds since QEMU started when the true exit line arrived. */
  exitAt: number | undefined;
  private phase: Phase = 'boot';
  private readonly emitted = new Set<Milestone>();
  private readonly t0 = performance.now();
  private readonly timers: NodeJS.Timeout[] = [];
  private stderr = '';
  private settle: ((e: End) => void) | undefined;
  private readonly luks: LuksPrompt;

  constructor(
    private readonly qemu: ConsoleProcess,
    private readonly o: TestSessionOptions,
  ) {
    this.watcher = new ConsoleWatcher({
      expect: o.expect,
      until: o.login && !o.expect ? 'login' : 'ready',
      nonce: o.bootNonce,
    });
    this.workload = new WorkloadConsole({ hostNonce: o.bootNonce });
    this.session = o.login ? new LoginSession({ ...o.login, command: o.command, nonce: o.nonce }) : undefined;
    this.luks = new LuksPrompt(o.luksPassphrase);
  }

  /** Milliseconds since QEMU started. */
  now(): number {
    return performance.now() - this.t0;
  }

  async run(signal?: AbortSignal): Promise<End> {
    const onAbort = () =>
      this.finish({
        ok: false,
        kind: 'interrupted',
        message: String((signal?.reason as Error)?.message ?? 'interrupted'),
      });
    const end = new Promise<End>((resolve) => {
      this.settle = resolve;
      this.qemu.stderr?.on('data', (d: Buffer) => {
        this.stderr = (this.stderr + d.toString()).slice(-4000);
      });
      this.qemu.stdout.on('data', (chunk: Buffer) => this.onChunk(chunk));
      this.timers.push(setInterval(() => this.onTick(), 250));
      this.timers.push(setTimeout(() => this.onTimeout(), this.o.timeoutMs));
      if (signal?.aborted) onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      // The exit settles after stdout has been drained, so a failure printed just before QEMU exits is seen first.
      void this.qemu.exited.then((r) => this.onExit(r));
    });
    try {
      return await end;
    } finally {
      this.timers.forEach((t) => clearTimeout(t));
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private finish(e: End): void {
    const settle = this.settle;
    this.settle = undefined;
    settle?.(e);
  }

  private get done(): boolean {
    return this.settle === undefined;
  }

  private type(s: string): void {
    this.qemu.stdin.write(s);
  }

  private onChunk(chunk: Buffer): void {
    if (this.done) return;
    const at = this.now();
    const text = this.watcher.feed(chunk, at);
    const hadNonce = this.workload.nonce !== undefined;
    this.workload.feed(chunk);
    // The nonce line is img2vm's init starting: the init milestone of a disk without systemd.
    if (!hadNonce && this.workload.nonce !== undefined) this.watcher.milestones.init ??= at;
    if (this.workload.exited) this.exitAt ??= at;
    this.o.log?.write(text);
    if (text) this.o.onEvent?.({ type: 'vm-console', stage: 'vm', text });
    this.emitMilestones();
    if (this.phase === 'boot') {
      const luks = this.luks.feed(text);
      if (luks.write) this.type(luks.write);
      if (luks.fail) return this.finish({ ok: false, kind: 'loginFailed', ...luks.fail });
      this.afterVerdict();
      if (!this.done) this.unboundInit();
      if (!this.done && this.workload.exited) this.afterWorkload();
      return;
    }
    if (this.workload.exited) {
      return this.finish({
        ok: false,
        kind: 'loginFailed',
        message: `the workload ended (status ${this.workload.status}) during the ${this.phase === 'command' ? 'command' : 'login'}`,
      });
    }
    if (this.phase === 'wait-login') {
      if (this.watcher.milestones.login !== undefined) this.startLogin();
      return;
    }
    this.loginStep(text);
  }

  private loginStep(text: string): void {
    const step = this.session!.feed(text);
    if (step.write && step.pauseMs) {
      const write = step.write;
      this.timers.push(setTimeout(() => !this.done && this.type(write), step.pauseMs));
    } else if (step.write) this.type(step.write);
    if (this.session!.phase === 'command' && this.phase === 'login') {
      this.phase = 'command';
      this.o.onEvent?.({ type: 'vm-phase', stage: 'vm', phase: 'command' });
    }
    if (step.outcome) {
      this.sessionOutcome = step.outcome;
      this.finish({ ok: true });
    }
  }

  private onTick(): void {
    if (this.phase !== 'boot' || this.done) return;
    this.watcher.tick(this.now());
    this.emitMilestones();
    this.afterVerdict();
  }

  private startLogin(): void {
    this.phase = 'login';
    this.o.onEvent?.({ type: 'vm-phase', stage: 'vm', phase: 'login' });
    this.type(this.session!.start());
  }

  /** Acts on the watcher's verdict once it has one: fail, pass, or go on to log in. */
  private afterVerdict(): void {
    const v = this.watcher.verdict;
    if (!v || this.phase !== 'boot' || this.done) return;
    if (v.status === 'failed')
      return this.finish({ ok: false, kind: 'kernelPanic', message: `boot failed: ${v.reason}`, hint: v.hint });
    if (this.o.expectExit !== undefined && v.matched !== 'expect') {
      const what = v.matched === 'marker' ? 'its readiness marker' : 'a login prompt';
      return this.finish({
        ok: false,
        kind: 'commandFailed',
        message: `expected a workload exiting with status ${this.o.expectExit}, but the guest came up to ${what} instead (${v.line})`,
        hint: "--expect-exit is for disks whose workload runs under img2vm's init (--init img2vm)",
      });
    }
    if (!this.session) return this.finish({ ok: true });
    this.phase = 'wait-login';
    if (this.watcher.milestones.login !== undefined) this.startLogin();
  }

  /**
   * img2vm's init said it found no boot nonce: none of its lines can be believed, so the test cannot pass; say why now
   * rather than at the timeout.
   */
  private unboundInit(): void {
    const line = this.workload.unbound;
    if (this.workload.nonce !== undefined || this.o.expect || !line || !/ host=none$/i.test(line)) return;
    this.finish({
      ok: false,
      kind: 'kernelPanic',
      message: `boot failed: img2vm's init found no nonce (host=none): it reads the SMBIOS OEM string ${BOOT_NONCE_PREFIX}… that img2vm test passes, through /sys/firmware/dmi/entries, or ${BOOT_NONCE_PREFIX} on the kernel command line of a direct-kernel boot`,
      hint: "the guest's kernel needs DMI sysfs (CONFIG_DMI_SYSFS); Debian's cloud kernel, img2vm's default, has it built in",
    });
  }

  /** The workload's exit status decides, against --expect-exit (0 without it). */
  private afterWorkload(): void {
    const status = this.workload.status!;
    const expected = this.o.expectExit ?? 0;
    if (this.session) {
      return this.finish({
        ok: false,
        kind: 'loginFailed',
        message: `the workload exited with status ${status} before a login prompt`,
      });
    }
    if (this.o.expect) {
      return this.finish({
        ok: false,
        kind: 'commandFailed',
        message: `the workload exited with status ${status} before a console line matched /${this.o.expect.source}/`,
      });
    }
    if (status === expected) return this.finish({ ok: true });
    this.finish({
      ok: false,
      kind: 'commandFailed',
      message: `the workload exited with status ${status}${this.o.expectExit !== undefined ? `, not ${expected}` : ''}`,
    });
  }

  private emitMilestones(): void {
    for (const [name, at] of Object.entries(this.watcher.milestones) as [Milestone, number][]) {
      if (this.emitted.has(name)) continue;
      this.emitted.add(name);
      this.o.onEvent?.({ type: 'vm-milestone', stage: 'vm', name, seconds: round(at) });
    }
  }

  private tail(prefix: string, silent: string): string {
    const last = this.watcher.lastLines(1)[0]?.trim();
    return last ? `${prefix}${last}` : silent;
  }

  /** What was seen but not believed, for a report of a test that did not pass. */
  private ignoredNote(): string {
    const unbound = this.workload.nonce === undefined && this.workload.unbound;
    return (
      this.watcher.ignoredNote() + (unbound ? `; ignored a nonce line without this boot's nonce (${unbound})` : '')
    );
  }

  private onTimeout(): void {
    const s = this.o.timeoutMs / 1000;
    const tail = this.tail('; last console line: ', '; the console stayed silent');
    if (this.phase === 'login' || this.phase === 'wait-login') {
      return this.finish({
        ok: false,
        kind: 'loginFailed',
        message: `logging in as ${this.o.login!.user} did not finish within ${s} s${tail}`,
      });
    }
    if (this.phase === 'command')
      return this.finish({
        ok: false,
        kind: 'testTimeout',
        message: `the command did not finish within ${s} s${tail}`,
      });
    if (this.workload.nonce !== undefined && !this.o.expect) {
      return this.finish({ ok: false, kind: 'testTimeout', message: `the workload did not exit within ${s} s${tail}` });
    }
    const what = this.o.expect
      ? `no console line matched /${this.o.expect.source}/`
      : this.o.expectExit !== undefined
        ? 'no workload exit'
        : this.watcher.checking
          ? "the guest's readiness check began but gave no verdict"
          : 'no readiness marker or login prompt';
    this.finish({
      ok: false,
      kind: 'testTimeout',
      message: `${what} within ${s} s${tail}${this.o.expect ? '' : this.ignoredNote()}`,
    });
  }

  private onExit(r: { exitCode?: number; signal?: string }): void {
    if (this.done) return;
    this.workload.flush();
    this.afterVerdict();
    if (!this.done && this.phase === 'boot') this.unboundInit();
    if (!this.done && this.workload.exited && this.phase === 'boot') this.afterWorkload();
    if (this.done) return;
    if (r.exitCode !== 0) {
      const why = this.stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/warning:/.test(l))
        .pop();
      return this.finish({
        ok: false,
        kind: 'qemuFailed',
        message: `QEMU failed (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`})${why ? `: ${why}` : ''}`,
        hint: `command: ${this.o.argv.join(' ')}`,
      });
    }
    const ending = this.tail(' (last console line: ', '');
    const close = ending ? ')' : '';
    if (this.workload.nonce !== undefined && this.phase === 'boot') {
      const why = this.workload.fatal
        ? `img2vm's init failed: ${this.workload.fatal}`
        : "the guest powered off without reporting the workload's exit status";
      return this.finish({ ok: false, kind: 'kernelPanic', message: `boot failed: ${why}` });
    }
    if (this.phase === 'boot' || this.phase === 'wait-login') {
      return this.finish({
        ok: false,
        kind: 'kernelPanic',
        message: `boot failed: the guest reset or powered off before it was up${ending}${close}${this.ignoredNote()}`,
      });
    }
    this.finish({
      ok: false,
      kind: this.phase === 'login' ? 'loginFailed' : 'commandFailed',
      message: `the guest reset or powered off during the ${this.phase}${ending}${close}`,
    });
  }
}
