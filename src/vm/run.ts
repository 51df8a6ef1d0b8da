// `img2vm run`: boots a disk with its serial console on the user's terminal until the guest or the user ends it.
import { Img2vmError } from '../core/errors.js';
import { prepareMachine, startQemu, type Machine } from './machine.js';
import type { Accel, Boot, DiskFormat, Firmware, Publish } from './qemu.js';
import { DEFAULT_CPUS, DEFAULT_MEM_MIB, type VmContext } from './test.js';

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
  /** Called once the machine is chosen, before QEMU takes the terminal. */
  onStart?: (machine: Machine) => void;
}

export interface RunResult {
  disk: string;
  format: DiskFormat;
  firmware: Boot;
  accel: Accel;
  seconds: number;
}

export async function runDisk(o: RunOptions, ctx: VmContext): Promise<RunResult> {
  const machine = await prepareMachine(
    {
      disk: o.disk, firmware: o.firmware, memMiB: o.memMiB ?? DEFAULT_MEM_MIB, cpus: o.cpus ?? DEFAULT_CPUS,
      snapshot: !o.persist, publish: o.publish ?? [], console: 'terminal',
    },
    ctx.scope,
  );
  o.onStart?.(machine);
  ctx.signal?.throwIfAborted();
  const t0 = performance.now();
  const qemu = startQemu(machine, ctx.scope);

  type End = { kind: 'exit'; code: number | undefined; signal: string | undefined } | { kind: 'timeout' } | { kind: 'abort' };
  const end = await new Promise<End>((resolve) => {
    const timer = o.timeoutMs !== undefined ? setTimeout(() => resolve({ kind: 'timeout' }), o.timeoutMs) : undefined;
    const onAbort = () => resolve({ kind: 'abort' });
    if (ctx.signal?.aborted) onAbort();
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    void qemu.child.then((r) => {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onAbort);
      resolve({ kind: 'exit', code: r.exitCode, signal: r.signal });
    });
  });
  await qemu.stop();
  const seconds = Math.round(performance.now() - t0) / 1000;
  // A signal wins over the exit it caused (QEMU also receives a terminal's SIGINT).
  if (end.kind === 'abort' || ctx.signal?.aborted) throw ctx.signal?.reason ?? new Img2vmError('interrupted', 'interrupted');
  if (end.kind === 'timeout') {
    throw new Img2vmError('testTimeout', `stopped QEMU after --timeout ${o.timeoutMs! / 1000} s`);
  }
  if (end.code !== 0) {
    throw new Img2vmError(
      'qemuFailed',
      `QEMU failed (${end.signal ? `signal ${end.signal}` : `exit ${end.code}`})`,
      `command: qemu-system-x86_64 ${machine.argv.join(' ')}`,
    );
  }
  return { disk: machine.disk, format: machine.format, firmware: machine.firmware, accel: machine.accel, seconds };
}
