// Signals during a VM run: the first stops the guest gracefully, a third exits at once; resources go with the scope.
import { Scope } from '../core/scope.js';
import { SignalInterrupt } from '../vm/run.js';
import { VmTestError } from '../vm/test.js';
import { stderr } from './print.js';

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * The first signal aborts with the signal's name (run types ^C to the guest and waits for its workload; QEMU is
 * stopped by the scope: SIGTERM, then SIGKILL 3 s later); a second one only says that this is under way; a
 * third exits at once, with execa killing QEMU on the way out.
 */
export async function withVmSignals<T>(fn: (ctx: { scope: Scope; signal: AbortSignal }) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const scope = new Scope();
  let count = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    count++;
    if (count === 1) ac.abort(new SignalInterrupt(sig));
    else stderr('img2vm: stopping the guest; QEMU is killed soon after the first signal\n');
    if (count >= 3) process.exit(new SignalInterrupt(sig).exitCode);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  try {
    const r = await fn({ signal: ac.signal, scope });
    if (ac.signal.aborted) throw ac.signal.reason;
    return r;
  } catch (e) {
    throw ac.signal.aborted && !(e instanceof SignalInterrupt) && !(e instanceof VmTestError) ? ac.signal.reason : e;
  } finally {
    await scope.close((label, e) => stderr(`img2vm: cleanup "${label}" failed: ${(e as Error).message}\n`));
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}
