// `img2vm run`: boots a disk with its console relayed to the user; on a workload disk it ends with the workload's exit status.
import { ARCH } from '../core/arch.js';
import { connect, type Socket } from 'node:net';
import { InterruptedError, Img2vmError } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import { prepareMachine, startQemu, type ConsoleProcess, type Machine } from './machine.js';
import type { Accel, Boot, DiskFormat, Firmware, Publish, Share } from './qemu.js';
import { DEFAULT_CPUS, DEFAULT_MEM_MIB, type VmContext } from './test.js';
import { LuksPrompt } from './luks-prompt.js';
import { signalExitCode, WorkloadConsole } from './workload.js';

/** How long an interrupted guest has to report its workload's exit before QEMU is stopped. */
export const INTERRUPT_GRACE_MS = 10_000;
/** How long a guest has to power off after its exit line before QEMU is stopped. */
export const POWEROFF_GRACE_MS = 10_000;
/** ^C: the guest's terminal turns it into SIGINT for the workload. */
export const INTERRUPT_BYTE = '\x03';

/** An interruption by a signal, exiting as a shell would report it (130 for SIGINT, 143 for SIGTERM). */
export class SignalInterrupt extends InterruptedError {
  constructor(
    readonly signal: NodeJS.Signals,
    detail?: string,
  ) {
    super(signal);
    if (detail) this.message = `${this.message}: ${detail}`;
    Object.defineProperty(this, 'exitCode', { value: signalExitCode(signal), enumerable: true });
    Object.defineProperty(this, 'hint', { value: 'QEMU was stopped; nothing is left running', enumerable: true });
  }
}

/** The user's side of the console: the CLI wires it to the terminal, tests to buffers. */
export interface RunIo {
  /** What the user types, forwarded to the guest's console. */
  input?: NodeJS.ReadableStream;
  /** Console bytes for the user: the workload's output (and, before img2vm's init speaks, the boot). */
  output: (bytes: Buffer) => void;
  /** img2vm's own console lines, plain text. */
  own?: (line: string) => void;
  /** The user's terminal (in raw mode) is the console: QEMU's Ctrl-a commands are offered. */
  terminal: boolean;
}

export interface RunOptions {
  disk: string;
  firmware?: Firmware;
  memMiB?: number;
  cpus?: number;
  /** Stop QEMU after this long; unlimited otherwise. */
  timeoutMs?: number;
  publish?: readonly Publish[];
  /** Let the guest write to the disk file (QEMU's -snapshot is on otherwise). */
  persist?: boolean;
  /** `img2vm run IMAGE`: the run config disk and virtio-fs shares. */
  runConfig?: string;
  shares?: readonly Share[];
  /** -i without -t: source becomes the workload's stdin through the port QEMU serves on socket (see qemuArgs). */
  stdin?: { socket: string; source: NodeJS.ReadableStream };
  /** -t: window size changes ("ROWS COLS" lines from source) through the port QEMU serves on socket. */
  winsize?: { socket: string; source: NodeJS.ReadableStream };
  /** QEMU's monitor on the console (Ctrl-a x quits); default: when the console is the user's terminal. */
  monitor?: boolean;
  /** Hold the boot text back even on a terminal (the disk is known to run img2vm's init: only the workload shows). */
  holdBoot?: boolean;
  io: RunIo;
  interruptGraceMs?: number;
  /** Called once the machine is chosen, before QEMU starts. */
  onStart?: (machine: Machine) => void;
  /** Typed when the guest asks for the LUKS passphrase (--luks-password); never shown or logged. */
  luksPassphrase?: string;
}

export interface RunResult {
  disk: string;
  format: DiskFormat;
  firmware: Boot;
  accel: Accel;
  seconds: number;
  /** On a disk with img2vm's init: the workload's exit status, which `img2vm run` exits with. */
  workload?: { status: number };
}

export type RunEnd =
  | { kind: 'exit'; code?: number; signal?: string }
  | { kind: 'timeout' }
  | { kind: 'interrupted'; signal: NodeJS.Signals }
  | { kind: 'luks'; message: string; hint: string };

export interface RunSessionOptions {
  io: RunIo;
  timeoutMs?: number;
  /** How long boot text is held back waiting for img2vm's nonce line when output is not a terminal. */
  bootHoldMs?: number;
  /** Hold boot text back on a terminal too. */
  holdBoot?: boolean;
  interruptGraceMs?: number;
  poweroffGraceMs?: number;
  /** The LUKS passphrase to type when asked (see LuksAnswer). */
  luksPassphrase?: string;
}

/** How much console output is held back waiting for a LUKS prompt before it is let through after all. */
const MAX_LUKS_HOLD = 256 * 1024;

/**
 * The LUKS side of a run. With a passphrase it is typed at the prompt (LuksPrompt, as img2vm test does), and when
 * the output is not a terminal the prompt is kept out of it (a script gets the workload's output alone): output
 * is held until the prompt, the prompt line dropped up to the newline the guest prints after the answer.
 * Without a passphrase a terminal's user types it; anything else ends at the prompt with what to give, never a hang.
 */
class LuksAnswer {
  private prompt: LuksPrompt | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private holding: boolean;
  private skipEcho = false;

  constructor(passphrase: string | undefined, terminal: boolean) {
    this.prompt = passphrase !== undefined || !terminal ? new LuksPrompt(passphrase) : undefined;
    this.holding = passphrase !== undefined && !terminal;
  }

  /** Watches console text; returns what to type, a failure, and the output to show now. */
  step(text: string, output: Buffer): { write?: string; fail?: { message: string; hint: string }; output: Buffer } {
    if (!this.prompt) return { output };
    const s = this.prompt.feed(text);
    if (s.done) this.prompt = undefined;
    let shown = output;
    const held = this.holding;
    if (this.skipEcho && shown.length) {
      // The rest of the prompt line (its trailing space may come after the answer was typed) and the newline the
      // guest prints after the answer, however the chunks fall.
      const nl = shown.indexOf(0x0a);
      this.skipEcho = nl < 0;
      shown = nl < 0 ? Buffer.alloc(0) : shown.subarray(nl + 1);
    }
    if (this.holding) {
      this.held.push(shown);
      this.heldBytes += shown.length;
      shown = Buffer.alloc(0);
      if (s.write) shown = this.dropPrompt();
      else if (this.heldBytes > MAX_LUKS_HOLD) shown = this.release();
    }
    if (s.write && held) this.skipEcho = true;
    return { ...(s.write ? { write: s.write } : {}), ...(s.fail ? { fail: s.fail } : {}), output: shown };
  }

  /** What is held, up to the line the prompt is on. */
  private dropPrompt(): Buffer {
    const all = Buffer.concat(this.held);
    const at = all.lastIndexOf('Please ');
    const line = at < 0 ? all.length : all.lastIndexOf(0x0a, at) + 1;
    this.held = [];
    this.holding = false;
    return all.subarray(0, line);
  }

  /** Everything held (the end of the run, or far too much output for a disk that asks nothing). */
  release(): Buffer {
    const all = Buffer.concat(this.held);
    this.held = [];
    this.heldBytes = 0;
    this.holding = false;
    return all;
  }
}

/**
 * One QEMU run as a state machine: console bytes are split into the user's and img2vm's, a timeout or an
 * interruption ends it. An interruption first types ^C on the guest's console and waits a bounded grace for the
 * workload's exit line, so the workload can end cleanly. Every end stops QEMU.
 */
/** img2vm's init announces itself within seconds of the kernel starting, even under TCG on a busy machine. */
const BOOT_HOLD_MS = 60_000;
const MAX_BOOT_HOLD = 8 * 1024 * 1024;

export class RunSession {
  readonly console = new WorkloadConsole();
  /** Boot text held back while it is not known whether the disk runs a workload (output not to a terminal). */
  private boot: Buffer[] = [];
  private bootBytes = 0;
  stderrTail = '';
  /** The end of the console stream as QEMU sent it, to tell a user's Ctrl-a x (QEMU says so) from a power-off. */
  private rawTail = '';
  private readonly timers: NodeJS.Timeout[] = [];
  private interrupted: NodeJS.Signals | undefined;
  private poweroffTimer = false;
  private settle: ((e: RunEnd) => void) | undefined;
  private readonly luks: LuksAnswer;

  constructor(
    private readonly qemu: ConsoleProcess,
    private readonly o: RunSessionOptions,
  ) {
    this.luks = new LuksAnswer(o.luksPassphrase, o.io.terminal);
  }

  async run(signal?: AbortSignal): Promise<RunEnd> {
    // A script reading a workload's output wants that alone, as from docker run; a disk without img2vm's init
    // (no nonce line) gets its boot text released after a while, and from then on as it comes.
    if (!this.o.io.terminal || this.o.holdBoot) {
      this.console.holdBoot = true;
      this.timers.push(setTimeout(() => this.releaseBoot(), this.o.bootHoldMs ?? BOOT_HOLD_MS));
    }
    const onAbort = () => this.interrupt(signalOf(signal?.reason));
    const onInput = (d: Buffer | string) => this.qemu.stdin.write(d);
    const end = new Promise<RunEnd>((resolve) => {
      this.settle = resolve;
      this.qemu.stdout.on('data', (chunk: Buffer) => this.onConsole(chunk));
      this.qemu.stderr?.on('data', (d: Buffer) => {
        this.stderrTail = (this.stderrTail + d.toString()).slice(-4000);
      });
      this.o.io.input?.on('data', onInput);
      if (this.o.timeoutMs !== undefined)
        this.timers.push(setTimeout(() => this.finish({ kind: 'timeout' }), this.o.timeoutMs));
      if (signal?.aborted) onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      void this.qemu.exited.then((r) => this.onExit(r));
    });
    try {
      return await end;
    } finally {
      this.timers.forEach((t) => clearTimeout(t));
      signal?.removeEventListener('abort', onAbort);
      this.o.io.input?.removeListener('data', onInput);
      await this.qemu.stop();
    }
  }

  private finish(e: RunEnd): void {
    const settle = this.settle;
    this.settle = undefined;
    // Once interrupted, however QEMU then ends, the run ends as interrupted.
    settle?.(this.interrupted && e.kind !== 'timeout' ? { kind: 'interrupted', signal: this.interrupted } : e);
  }

  /** The user quit through QEMU's monitor (Ctrl-a x on a terminal) rather than the guest ending. */
  get quit(): boolean {
    return this.o.io.terminal && /QEMU: Terminated\s*$/.test(this.rawTail);
  }

  private onConsole(chunk: Buffer): void {
    if (!this.settle) return;
    this.rawTail = (this.rawTail + chunk.toString('latin1')).slice(-64);
    const parts = this.console.feed(chunk);
    if (parts.boot.length) {
      this.boot.push(parts.boot);
      this.bootBytes += parts.boot.length;
      if (this.bootBytes > MAX_BOOT_HOLD) this.releaseBoot();
    }
    // The nonce line came: what was held is the boot of a workload disk, not its output.
    if (this.console.nonce !== undefined && this.console.holdBoot) {
      this.console.stopHoldingBoot();
      for (const line of Buffer.concat(this.boot).toString('utf8').split('\n'))
        if (line.trim()) this.o.io.own?.(`boot: ${line.replace(/\r$/, '')}`);
      this.boot = [];
    }
    const luks = this.luks.step(chunk.toString('utf8'), parts.output);
    if (luks.write) this.qemu.stdin.write(luks.write);
    this.deliver(luks.output, parts.own);
    if (luks.fail) return this.finish({ kind: 'luks', ...luks.fail });
    if (this.console.exited && !this.poweroffTimer) {
      this.poweroffTimer = true;
      this.timers.push(setTimeout(() => void this.qemu.stop(), this.o.poweroffGraceMs ?? POWEROFF_GRACE_MS));
    }
  }

  private deliver(output: Buffer, own: string[]): void {
    if (output.length) this.o.io.output(output);
    for (const line of own) this.o.io.own?.(line);
  }

  /** The disk runs no workload (or took too long to say so): the boot text was the user's after all. */
  private releaseBoot(): void {
    if (!this.console.holdBoot) return;
    this.console.stopHoldingBoot();
    if (this.boot.length) this.o.io.output(Buffer.concat(this.boot));
    this.boot = [];
  }

  private onExit(r: { exitCode?: number; signal?: string }): void {
    this.releaseBoot();
    const rest = this.console.flush();
    this.deliver(Buffer.concat([this.luks.release(), rest.output]), rest.own);
    this.finish({ kind: 'exit', code: r.exitCode, signal: r.signal });
  }

  private interrupt(sig: NodeJS.Signals): void {
    if (this.interrupted) return;
    this.interrupted = sig;
    if (this.console.exited) return;
    this.qemu.stdin.write(INTERRUPT_BYTE);
    this.timers.push(
      setTimeout(
        () => this.finish({ kind: 'interrupted', signal: sig }),
        this.o.interruptGraceMs ?? INTERRUPT_GRACE_MS,
      ),
    );
  }
}

function signalOf(reason: unknown): NodeJS.Signals {
  return reason instanceof SignalInterrupt ? reason.signal : 'SIGINT';
}

/** What a run's end means: the result (with the workload's status), or the error img2vm exits with. */
export function concludeRun(
  end: RunEnd,
  session: RunSession,
  machine: Machine,
  o: { timeoutMs?: number },
  seconds: number,
): RunResult {
  const wl = session.console;
  if (end.kind === 'interrupted') {
    const said =
      wl.status !== undefined
        ? `the workload exited with status ${wl.status}`
        : wl.nonce
          ? 'the workload did not report an exit status in time; QEMU was stopped'
          : 'QEMU was stopped';
    throw new SignalInterrupt(end.signal, said);
  }
  if (end.kind === 'timeout')
    throw new Img2vmError('testTimeout', `stopped QEMU after --timeout ${o.timeoutMs! / 1000} s`);
  if (end.kind === 'luks') throw new Img2vmError('loginFailed', end.message, end.hint);
  // A guest that reported its workload's status and was then stopped (it did not power off) still has that status.
  if (end.code !== 0 && wl.status === undefined) {
    const why = session.stderrTail
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !/warning:/.test(l))
      .pop();
    throw new Img2vmError(
      'qemuFailed',
      `QEMU failed (${end.signal ? `signal ${end.signal}` : `exit ${end.code}`})${why ? `: ${why}` : ''}`,
      `command: ${ARCH[machine.arch].qemu} ${machine.argv.join(' ')}`,
    );
  }
  if (wl.nonce !== undefined && wl.status === undefined && !session.quit) {
    throw new Img2vmError(
      'kernelPanic',
      wl.fatal
        ? `img2vm's init failed: ${wl.fatal}`
        : "the guest powered off without reporting the workload's exit status",
      "run it again with -v to see img2vm's own console lines",
    );
  }
  const result: RunResult = {
    disk: machine.disk,
    format: machine.format,
    firmware: machine.firmware,
    accel: machine.accel,
    seconds,
  };
  if (wl.status !== undefined) result.workload = { status: wl.status };
  return result;
}

/**
 * Connects to a port's socket once QEMU listens (for stdin it waits for this before starting the guest) and feeds it
 * source; source's end closes the connection, which the guest reads as the end of the stream.
 */
function feedPort(socket: string, source: NodeJS.ReadableStream, qemu: ConsoleProcess, scope: Scope): void {
  let conn: Socket | undefined;
  let done = false;
  scope.defer(`close ${socket}`, () => {
    done = true;
    conn?.destroy();
  });
  void qemu.exited.then(() => (done = true));
  const attempt = () => {
    if (done) return;
    const c = connect(socket);
    c.once('error', () => {
      c.destroy();
      // QEMU has not made its socket yet: it will, before it starts the guest.
      if (!done) setTimeout(attempt, 20);
    });
    c.once('connect', () => {
      conn = c;
      c.on('error', () => undefined);
      source.pipe(c);
    });
  };
  attempt();
}

export async function runDisk(o: RunOptions, ctx: VmContext): Promise<RunResult> {
  const machine = await prepareMachine(
    {
      disk: o.disk,
      firmware: o.firmware,
      memMiB: o.memMiB ?? DEFAULT_MEM_MIB,
      cpus: o.cpus ?? DEFAULT_CPUS,
      snapshot: !o.persist,
      publish: o.publish ?? [],
      console: (o.monitor ?? o.io.terminal) ? 'terminal' : 'pipe',
      runConfig: o.runConfig,
      shares: o.shares,
      stdinSocket: o.stdin?.socket,
      winsizeSocket: o.winsize?.socket,
    },
    ctx.scope,
  );
  o.onStart?.(machine);
  ctx.signal?.throwIfAborted();
  const t0 = performance.now();
  const qemu = startQemu(machine, ctx.scope);
  if (o.stdin) feedPort(o.stdin.socket, o.stdin.source, qemu, ctx.scope);
  if (o.winsize) feedPort(o.winsize.socket, o.winsize.source, qemu, ctx.scope);
  const session = new RunSession(qemu, {
    io: o.io,
    timeoutMs: o.timeoutMs,
    interruptGraceMs: o.interruptGraceMs,
    holdBoot: o.holdBoot,
    ...(o.luksPassphrase !== undefined ? { luksPassphrase: o.luksPassphrase } : {}),
  });
  const end = await session.run(ctx.signal);
  return concludeRun(end, session, machine, o, Math.round(performance.now() - t0) / 1000);
}
