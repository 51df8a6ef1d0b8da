// A pause point for tests of interruption: IMG2VM_TEST_HOOK=WHEN:POINT makes img2vm say on stderr that it reached POINT, then wait for a signal.
//
// WHEN is before, after or during; POINT is STAGE/STEP-ID as the plan spells it (rootfs/flatten, guest/distro,
// output/vmdk, output/push), output/rename (the rename into place), or a point inside a long operation:
//   during:source/archive      an image archive's headers are being read (after its first member)
//   during:source/fetch-blob   a blob is being downloaded into the cache (after its first chunk)
//   during:guest/build-step    a builder's RUN step is running in its container
//   during:rootfs/flatten      a layer is being flattened (after its first chunk)
//   during:output/convert      qemu-img convert is running
//   during:output/push         a blob is being uploaded
// At the point img2vm writes "img2vm-hook: WHEN POINT" to stderr and waits until SIGINT, SIGTERM or SIGHUP comes,
// then carries on: the signal has aborted the run by then, so what follows sees it exactly as if it had come
// at that instant. The hook fires once per process. Unset (always, outside tests), it does nothing at all.
import { INTERRUPT_SIGNALS as SIGNALS } from './errors.js';

let fired = false;

export type HookWhen = 'before' | 'after' | 'during';

/** Whether IMG2VM_TEST_HOOK names this point (cheap: read on every call, so tests may set it in-process). */
export function hookWanted(when: HookWhen, point: string): boolean {
  return !fired && process.env.IMG2VM_TEST_HOOK === `${when}:${point}`;
}

/**
 * Pauses at a named point when IMG2VM_TEST_HOOK asks for it; resolves at once otherwise. Callers inside a
 * running child process's output handler may ignore the promise: the child goes on while the test signals.
 */
export function testHook(when: HookWhen, point: string): Promise<void> {
  if (!hookWanted(when, point)) return Promise.resolve();
  fired = true;
  return new Promise<void>((resolve) => {
    // Signal listeners do not keep Node alive: without a timer it would exit (13) while it waits.
    const alive = setInterval(() => {}, 1 << 30);
    const go = () => {
      clearInterval(alive);
      for (const s of SIGNALS) process.off(s, go);
      // The run's own handler (registered first) has aborted by the time this continuation runs.
      setImmediate(resolve);
    };
    for (const s of SIGNALS) process.on(s, go);
    process.stderr.write(`img2vm-hook: ${when} ${point}\n`);
  });
}
