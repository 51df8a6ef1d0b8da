// Runs a command with SIGINT/SIGTERM turned into an abort, and its resource scope closed whatever happens.
import { ExitCode, InterruptedError } from '../core/errors.js';
import { Scope } from '../core/scope.js';

/**
 * The first signal aborts (stages stop, the scope releases temp files, containers, QEMU); a second
 * one only says that cleanup is under way; a third gives up waiting and exits.
 */
export async function withSignals<T>(fn: (ctx: { signal: AbortSignal; scope: Scope }) => Promise<T>, stillCleaning: string): Promise<T> {
  const ac = new AbortController();
  const scope = new Scope();
  let count = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    count++;
    if (count === 1) ac.abort(new InterruptedError(sig));
    else process.stderr.write(`img2vm: ${stillCleaning}\n`);
    if (count >= 3) process.exit(ExitCode.interrupted);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const r = await fn({ signal: ac.signal, scope });
    if (ac.signal.aborted) throw ac.signal.reason;
    return r;
  } catch (e) {
    throw ac.signal.aborted ? ac.signal.reason : e;
  } finally {
    await scope.close((label, e) => process.stderr.write(`img2vm: cleanup "${label}" failed: ${(e as Error).message}\n`));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
