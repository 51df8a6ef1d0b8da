// SIGINT, SIGTERM and SIGHUP abort a run with the shell's exit code for that signal; a signal after the work is done
// reports what was completed instead of "nothing was written". Signals are emitted to the listeners, not sent.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InterruptedError, signalExitCode } from '../../src/core/errors.js';
import { withSignals } from '../../src/cli/signals.js';
import { hookWanted, testHook } from '../../src/core/test-hook.js';

const emit = (sig: NodeJS.Signals) => process.emit(sig, sig);

afterEach(() => {
  delete process.env.IMG2VM_TEST_HOOK;
  vi.restoreAllMocks();
});

/** A run that waits until it is aborted, then fails as a step would (with the abort reason). */
function untilAborted({ signal }: { signal: AbortSignal }): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

describe('withSignals', () => {
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    it(`${sig} aborts the run: exit ${code}, the scope closed`, async () => {
      const closed = vi.fn();
      const run = withSignals(async (c) => {
        c.scope.defer('probe', closed);
        setImmediate(() => emit(sig));
        return untilAborted(c);
      }, 'still cleaning');
      const e = (await run.catch((x: unknown) => x)) as InterruptedError;
      expect(e).toBeInstanceOf(InterruptedError);
      expect(e).toMatchObject({
        kind: 'interrupted',
        exitCode: code,
        signalName: sig,
        message: `interrupted by ${sig}`,
        hint: 'nothing was written; temporary files were removed',
      });
      expect(closed).toHaveBeenCalledOnce();
      expect(process.listenerCount(sig)).toBe(0);
    });
  }

  it("a step's own failure after the abort is replaced by the interruption", async () => {
    const e = await withSignals(async ({ signal }) => {
      setImmediate(() => emit('SIGINT'));
      await new Promise((r) => signal.addEventListener('abort', r));
      throw new Error('EPIPE from a killed child');
    }, 'x').catch((x: unknown) => x);
    expect((e as Error).message).toBe('interrupted by SIGINT');
  });

  it('a signal after the work succeeded reports what was completed', async () => {
    const e = await withSignals(
      async () => {
        emit('SIGTERM');
        return { output: '/out/disk.qcow2' };
      },
      'x',
      { late: (r, sig) => new InterruptedError(sig, { after: `${r.output} was written` }) },
    ).catch((x: unknown) => x);
    expect(e).toMatchObject({
      exitCode: 143,
      message: 'interrupted by SIGTERM after /out/disk.qcow2 was written',
      hint: 'that output is complete and stays; temporary files were removed',
    });
  });

  it('an InterruptedError that knows more (thrown by the run itself) is kept', async () => {
    const e = await withSignals(async () => {
      emit('SIGHUP');
      throw new InterruptedError('SIGHUP', { after: 'x was pushed' });
    }, 'x').catch((x: unknown) => x);
    expect((e as Error).message).toBe('interrupted by SIGHUP after x was pushed');
  });

  it('a second signal says cleanup is under way', async () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await withSignals(async (c) => {
      emit('SIGINT');
      emit('SIGINT');
      return untilAborted(c);
    }, 'still cleaning up').catch(() => undefined);
    expect(write).toHaveBeenCalledWith('img2vm: still cleaning up\n');
  });

  it('exit codes by signal', () => {
    expect([
      signalExitCode('SIGINT'),
      signalExitCode('SIGTERM'),
      signalExitCode('SIGHUP'),
      signalExitCode(undefined),
    ]).toEqual([130, 143, 129, 130]);
  });
});

describe('the test hook', () => {
  it('does nothing unless IMG2VM_TEST_HOOK names the point', async () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    process.env.IMG2VM_TEST_HOOK = 'before:rootfs/flatten';
    expect(hookWanted('after', 'rootfs/flatten')).toBe(false);
    await testHook('after', 'rootfs/flatten');
    delete process.env.IMG2VM_TEST_HOOK;
    await testHook('before', 'rootfs/flatten');
    expect(write).not.toHaveBeenCalled();
    expect(process.listenerCount('SIGINT')).toBe(0);
  });

  it('at the named point says so on stderr and waits for a signal, once per process', async () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    process.env.IMG2VM_TEST_HOOK = 'during:source/extract';
    let done = false;
    const p = testHook('during', 'source/extract').then(() => (done = true));
    expect(write).toHaveBeenCalledWith('img2vm-hook: during source/extract\n');
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    emit('SIGTERM');
    await p;
    expect(done).toBe(true);
    expect(process.listenerCount('SIGTERM')).toBe(0);
    // Fired already: a second pass through the point does not stop.
    await testHook('during', 'source/extract');
    expect(write).toHaveBeenCalledTimes(1);
  });
});
