// Logs in on a serial console and runs one command, as a pure state machine over console lines.
import { LineBuffer } from './console.js';

export interface LoginOptions {
  user: string;
  password: string;
  /** A shell command; without one the session ends, passing, at the first shell prompt. */
  command?: string;
  /** Makes the markers unique to this run (random in production, fixed in tests). */
  nonce: string;
}

export type SessionOutcome =
  | { status: 'logged-in' }
  | { status: 'done'; exitCode: number; output: string }
  | { status: 'login-failed'; reason: string };

export interface SessionStep {
  /** Bytes to type on the console: now, or after pauseMs. */
  write?: string;
  /**
   * login(1) prints "Password: " and then turns echo off with TCSAFLUSH, which throws away whatever was typed in
   * between: under TCG that window is wide enough for a password typed at once to be lost (the guest then waits
   * 60 s and asks again). The password is typed after this pause.
   */
  pauseMs?: number;
  outcome?: SessionOutcome;
}

/** How long the password waits after its prompt (see SessionStep.pauseMs). */
export const PASSWORD_PAUSE_MS = 500;
/** Times a login that was asked for again (login timed out, the password lost) starts over before it fails. */
const LOGIN_RETRIES = 1;

const PASSWORD_PROMPT = /(?:^|\s)Password: *$/i;
const PASSWORD_PROMPT_THEN_MORE = /(?:^|\s)Password: /i;
const SHELL_PROMPT = /[#$] *$/;
const LOGIN_PROMPT = /\blogin: *$/;
const LOGIN_INCORRECT = /Login incorrect|Authentication failure|Permission denied/;

/**
 * The line typed to run the command. The markers are split by an empty string ("") so that the terminal's
 * echo of this line can never be mistaken for the command's own output; the subshell keeps `exit` from
 * ending the login shell, and </dev/null keeps a command that reads stdin from waiting forever.
 */
export function commandLine(command: string, nonce: string): string {
  return `echo __IMG2VM_""BEGIN_${nonce}__; (${command}) </dev/null; echo __IMG2VM_""RC_${nonce}_$?__\r`;
}

/** Parses "USER:PASSWORD" (the password may contain ':' and may be empty; "USER" alone means no password). */
export function parseLogin(text: string): { user: string; password: string } | undefined {
  const i = text.indexOf(':');
  const user = i < 0 ? text : text.slice(0, i);
  const password = i < 0 ? '' : text.slice(i + 1);
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(user)) return undefined;
  return { user, password };
}

/**
 * Call start() when the watcher has seen the login prompt, then feed() every piece of cleaned console text.
 * States: user sent → (password sent) → shell prompt → command sent → RC marker.
 */
export class LoginSession {
  private state: 'idle' | 'user' | 'password' | 'command' | 'finished' = 'idle';
  private readonly lines = new LineBuffer();
  private readonly begin: string;
  private readonly rc: RegExp;
  private output: string[] | undefined;
  private retries = 0;

  constructor(private readonly opts: LoginOptions) {
    this.begin = `__IMG2VM_BEGIN_${opts.nonce}__`;
    this.rc = new RegExp(`__IMG2VM_RC_${opts.nonce}_(\\d+)__`);
  }

  get phase(): 'login' | 'command' | 'finished' {
    return this.state === 'command' ? 'command' : this.state === 'finished' ? 'finished' : 'login';
  }

  start(): string {
    this.state = 'user';
    return `${this.opts.user}\r`;
  }

  feed(text: string): SessionStep {
    const step: SessionStep = {};
    for (const line of this.lines.push(text)) {
      this.onLine(line, false, step);
      if (step.outcome) return step;
    }
    if (this.lines.partial) this.onLine(this.lines.partial, true, step);
    return step;
  }

  private finish(step: SessionStep, outcome: SessionOutcome): void {
    this.state = 'finished';
    step.outcome = outcome;
  }

  private onLine(line: string, partial: boolean, step: SessionStep): void {
    switch (this.state) {
      case 'user':
      case 'password': {
        if (!partial && LOGIN_INCORRECT.test(line)) {
          return this.finish(step, {
            status: 'login-failed',
            reason: `login as ${this.opts.user} failed: ${line.trim()}`,
          });
        }
        // The prompt is normally the line's unfinished end; output from elsewhere on the console (an image's service
        // under img2vm's init) can finish its line first, in the same piece of console text.
        const prompt = partial ? PASSWORD_PROMPT.test(line) : PASSWORD_PROMPT_THEN_MORE.test(line);
        if (this.state === 'user' && prompt) {
          this.state = 'password';
          step.write = `${this.opts.password}\r`;
          step.pauseMs = PASSWORD_PAUSE_MS;
          return;
        }
        if (!partial) return;
        if (this.state === 'password' && LOGIN_PROMPT.test(line)) {
          if (this.retries < LOGIN_RETRIES) {
            // Asked to log in again without "Login incorrect": the password never reached login (it timed out).
            this.retries++;
            this.state = 'user';
            step.write = `${this.opts.user}\r`;
            return;
          }
          return this.finish(step, {
            status: 'login-failed',
            reason: `login as ${this.opts.user} failed: asked to log in again`,
          });
        }
        if (SHELL_PROMPT.test(line) && !PASSWORD_PROMPT.test(line) && !LOGIN_PROMPT.test(line)) {
          if (this.opts.command === undefined) return this.finish(step, { status: 'logged-in' });
          this.state = 'command';
          step.write = commandLine(this.opts.command, this.opts.nonce);
        }
        return;
      }
      case 'command': {
        if (partial) return;
        const rc = this.rc.exec(line);
        if (rc && this.output) {
          const before = line.slice(0, rc.index);
          if (before.trim()) this.output.push(before);
          return this.finish(step, { status: 'done', exitCode: Number(rc[1]), output: this.output.join('\n') });
        }
        if (this.output) this.output.push(line);
        else if (line.includes(this.begin)) this.output = [];
        return;
      }
      default:
        return;
    }
  }
}
