// The console protocol of img2vm's init: the nonce line, the workload's exit line, and the console bytes minus img2vm's own lines.

/**
 * Printed once by img2vm's init before anything of the image runs: its own nonce, and (host=) the boot nonce
 * `img2vm test` handed the guest, or "none" when it found none (see native/init.c).
 */
export const NONCE_LINE = /^img2vm-init: nonce=([0-9a-f]{16,})(?: host=(\S+))?$/i;
/** Printed by img2vm's init when the workload has ended; only the nonce of the first nonce line makes it true. */
export const EXIT_LINE = /^img2vm-exit: nonce=([0-9a-f]{16,}) status=(\d{1,3})$/i;
/** Any other message of img2vm's init ("img2vm-init: fatal: ...", warnings). */
const INIT_MESSAGE = /^img2vm-init: (.*)$/;
const FATAL = /^img2vm-init: fatal: (.*)$/;
const PREFIXES = ['img2vm-init: ', 'img2vm-exit: '];

/** Escape sequences and carriage returns, removed before a line is compared with the protocol. */
const NOISE = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()#%]?[\s\S]?|\r|\0/g;

export function plainLine(bytes: Buffer | string): string {
  return (typeof bytes === 'string' ? bytes : bytes.toString('utf8')).replace(NOISE, '').replace(/\s+$/, '');
}

export interface ConsoleParts {
  /** Console bytes for the user, unchanged (escape sequences, CR LF): the workload's output, and boot text. */
  output: Buffer;
  /** With holdBoot: what came before the nonce line (firmware, boot loader, kernel), kept apart from output. */
  boot: Buffer;
  /** img2vm's own lines (the nonce line, the true exit line, the init's messages, what follows the exit), plain text. */
  own: string[];
}

/**
 * Splits a console byte stream as `img2vm run` shows it. Pure: feed it chunks in order, read nonce and status.
 * A line is held back only while it could still be one of img2vm's lines (it starts with "img2vm-"), so a
 * prompt without a newline reaches the user at once.
 */
export class WorkloadConsole {
  /** The nonce of the first nonce line (that carried the boot nonce, when there is one): only exit lines with it are believed. */
  nonce: string | undefined;
  /** The workload's exit status, from the first exit line with the true nonce. */
  status: number | undefined;
  /** What the init said before it gave up ("img2vm-init: fatal: ..."). */
  fatal: string | undefined;
  /** The first nonce line that did not carry the boot nonce (not believed), for the failure report. */
  unbound: string | undefined;
  private readonly maxLine: number;
  private readonly hostNonce: string | undefined;
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** An empty line kept back: the init starts its exit line with a newline of its own, which is not the workload's. */
  private blank: Buffer | undefined;
  private mode: 'start' | 'held' | 'pass' = 'start';

  /**
   * hostNonce: the boot nonce `img2vm test` handed the guest. With it, only a nonce line that carries it is believed,
   * so a disk without img2vm's init cannot pass a test by printing a canned nonce line and exit line.
   */
  constructor(opts: { hostNonce?: string; maxLine?: number } = {}) {
    this.hostNonce = opts.hostNonce?.toLowerCase();
    this.maxLine = opts.maxLine ?? 4096;
  }

  /** Whether the init said the workload has ended. */
  get exited(): boolean {
    return this.status !== undefined;
  }

  /**
   * holdBoot: keep what precedes the nonce line out of `output` (in `boot`), so a workload's output is all a
   * script sees; stopHoldingBoot() ends that for disks that turn out to have no img2vm init.
   */
  holdBoot = false;

  stopHoldingBoot(): void {
    this.holdBoot = false;
  }

  feed(chunk: Buffer): ConsoleParts {
    const out: Buffer[] = [];
    const boot: Buffer[] = [];
    const own: string[] = [];
    let from = 0;
    while (from < chunk.length) {
      const nl = chunk.indexOf(0x0a, from);
      const end = nl < 0 ? chunk.length : nl + 1;
      this.segment(chunk.subarray(from, end), nl >= 0, this.holdBoot && this.nonce === undefined ? boot : out, own);
      from = end;
    }
    return { output: Buffer.concat(out), boot: Buffer.concat(boot), own };
  }

  /** At the end of the stream: a held, unfinished line is released as what it looks like. */
  flush(): ConsoleParts {
    const out: Buffer[] = [];
    const own: string[] = [];
    if (this.heldBytes) this.lineDone(out, own);
    this.releaseBlank(out);
    return { output: Buffer.concat(out), boot: Buffer.alloc(0), own };
  }

  private segment(bytes: Buffer, endsLine: boolean, out: Buffer[], own: string[]): void {
    if (this.exited) {
      // After the true exit line the workload is gone: what follows is the guest powering off.
      this.hold(bytes);
      if (endsLine || this.heldBytes > this.maxLine) this.lineDone(out, own);
      return;
    }
    if (this.mode === 'pass') {
      this.releaseBlank(out);
      out.push(bytes);
      if (endsLine) this.mode = 'start';
      return;
    }
    this.hold(bytes);
    if (this.mode === 'start') {
      const text = plainLine(Buffer.concat(this.held));
      const could = PREFIXES.some((p) => (text.length < p.length ? p.startsWith(text) : text.startsWith(p)));
      if (!could) {
        this.release(out);
        this.mode = endsLine ? 'start' : 'pass';
        return;
      }
      if (PREFIXES.some((p) => text.startsWith(p))) this.mode = 'held';
    }
    if (endsLine) this.lineDone(out, own);
    else if (this.heldBytes > this.maxLine) {
      this.release(out);
      this.mode = 'pass';
    }
  }

  private hold(bytes: Buffer): void {
    if (!bytes.length) return;
    this.held.push(Buffer.from(bytes));
    this.heldBytes += bytes.length;
  }

  private releaseBlank(out: Buffer[]): void {
    if (this.blank) out.push(this.blank);
    this.blank = undefined;
  }

  private release(out: Buffer[]): void {
    this.releaseBlank(out);
    out.push(...this.held);
    this.drop();
  }

  private drop(): void {
    this.held = [];
    this.heldBytes = 0;
  }

  private lineDone(out: Buffer[], own: string[]): void {
    const bytes = Buffer.concat(this.held);
    const text = plainLine(bytes);
    this.mode = 'start';
    if (this.exited) {
      if (text) own.push(text);
      return this.drop();
    }
    if (!text) {
      this.releaseBlank(out);
      this.blank = bytes;
      return this.drop();
    }
    if (!this.isOwn(text)) return this.release(out);
    // The newline the init writes before its exit line is its own; before any other line of its own it is kept.
    if (this.exited) this.blank = undefined;
    else this.releaseBlank(out);
    own.push(text);
    this.drop();
  }

  /** Records what a line of the protocol says; false when it is the workload's (a forgery included). */
  private isOwn(text: string): boolean {
    const n = NONCE_LINE.exec(text);
    if (n) {
      if (this.nonce !== undefined) return false;
      if (this.hostNonce !== undefined && n[2]?.toLowerCase() !== this.hostNonce) {
        this.unbound ??= text;
        return false;
      }
      this.nonce = n[1]!.toLowerCase();
      return true;
    }
    const x = EXIT_LINE.exec(text);
    if (x) {
      const status = Number(x[2]);
      if (this.nonce === undefined || x[1]!.toLowerCase() !== this.nonce || status > 255) return false;
      this.status = status;
      return true;
    }
    if (!INIT_MESSAGE.test(text)) return false;
    const f = FATAL.exec(text);
    if (f) this.fatal ??= f[1]!.trim();
    return true;
  }
}

/** CR LF as LF (a serial console ends lines with both), for output that goes to a file or pipe rather than a terminal. */
export class CrlfToLf {
  private pendingCR = false;

  push(b: Buffer): Buffer {
    let s = b.toString('latin1');
    if (this.pendingCR) s = `\r${s}`;
    this.pendingCR = s.endsWith('\r');
    if (this.pendingCR) s = s.slice(0, -1);
    return Buffer.from(s.replace(/\r\n/g, '\n'), 'latin1');
  }

  end(): Buffer {
    const r = this.pendingCR ? Buffer.from('\r') : Buffer.alloc(0);
    this.pendingCR = false;
    return r;
  }
}

/** The exit code a shell gives a process ended by a signal, for img2vm itself. */
export function signalExitCode(signal: string | undefined): number {
  return signal === 'SIGTERM' ? 143 : signal === 'SIGHUP' ? 129 : 130;
}
