// Runs a command with SIGINT/SIGTERM/SIGHUP turned into an abort, and its resource scope closed whatever happens.
import { INTERRUPT_SIGNALS, InterruptedError, signalExitCode } from '../core/errors.js';
import { Scope } from '../core/scope.js';
import { stderr } from './print.js';

const SIGNALS = INTERRUPT_SIGNALS;

export interface SignalOptions<T> {
  /**
   * What a signal that came after fn succeeded means (the output is already in place): the error to report
   * instead of "nothing was written".
   */
  late?: (result: T, signal: string) => InterruptedError;
}

/**
 * The first signal aborts (stages stop, the scope releases temp files, containers, QEMU); a second one only
 * says that cleanup is under way; a third gives up waiting and exits. The exit code is the signal's (130, 143, 129).
 */
export async function withSignals<T>(
  fn: (ctx: { signal: AbortSignal; scope: Scope }) => Promise<T>,
  stillCleaning: string,
  o: SignalOptions<T> = {},
): Promise<T> {
  const ac = new AbortController();
  const scope = new Scope();
  let count = 0;
  let first: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      first = sig;
      ac.abort(new InterruptedError(sig));
    } else stderr(`img2vm: ${stillCleaning}\n`);
    if (count >= 3) process.exit(signalExitCode(first));
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  try {
    const r = await fn({ signal: ac.signal, scope });
    if (ac.signal.aborted) throw o.late ? o.late(r, first!) : ac.signal.reason;
    return r;
  } catch (e) {
    // A step that knows more about the interruption (what was already complete) says so itself.
    throw ac.signal.aborted && !(e instanceof InterruptedError) ? ac.signal.reason : e;
  } finally {
    await scope.close((label, e) => stderr(`img2vm: cleanup "${label}" failed: ${(e as Error).message}\n`));
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}

/**
 * After the output is in place the run cannot be undone: a signal while the summary is printed only says so and
 * exits with the signal's code (instead of the default action, which would end the process without a word).
 */
export function reportLateSignals(after: string): void {
  const onSignal = (sig: NodeJS.Signals) => {
    const e = new InterruptedError(sig, { after });
    stderr(`img2vm: ${e.message}\n  hint: ${e.hint}\n`);
    process.exit(e.exitCode);
  };
  for (const s of SIGNALS) process.once(s, onSignal);
}
