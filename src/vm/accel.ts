// Chooses KVM or TCG: KVM only when a probe guest really runs under it, and the probe can never hang.
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import { spawnTool, stopProcess } from '../tools/process.js';
import { kvmProbeArgs, type Accel, type TcgThread } from './qemu.js';

/** Built from kvm-probe.S (see there why a probe must run code rather than just open /dev/kvm). */
const KVM_PROBE_HEX =
  '02b0ad1b00000100fe4f51e40000100000001000000000000000000020001000fabf0000200031c0b9000c0000f3abc705000020000310' +
  '2000c7050010200003202000bf00202000b883000000b9000200008907050000200083c708e2f4b8000020000f22d80f20e083c8200f22' +
  'e0b9800000c00f320d000100000f300f20c00d010000800f22c00f0115d8001000ea96001000080066b810008ed88ec048c7c700004000' +
  '4831c048c7c100002000f348ab66baf400b810000000eff4ebfd900000000000000000ffff0000009aaf00ffff00000092cf001700c000' +
  '1000';
/** isa-debug-exit turns the probe's write of 0x10 into this exit status. */
const PROBE_OK = 33;
/**
 * Real KVM runs the probe in well under a second, QEMU's start included. Nested set-ups where /dev/kvm opens
 * but every exit is emulated finish it in 4-7 s (measured here) and then take minutes to boot a real guest, so
 * a slow pass counts as a failure.
 */
export const KVM_PROBE_TIMEOUT_MS = 1500;

export interface AccelChoice {
  accel: Accel;
  /** Why this accelerator: shown with -v and in --json. */
  reason: string;
}

let cached: Promise<AccelChoice> | undefined;

/**
 * How QEMU runs a TCG guest's vCPUs: each on its own host thread (QEMU's default, "multi") or all taking turns on one
 * ("single"). Multi is faster when the host has cores to spare (a Debian boot to login alone on 2 cores: 19.0-19.6 s
 * against 26.2-27.0 s), single when VMs outnumber the cores (two such boots at once: 29.4-30.6 s against 33.9-35.7 s),
 * and under that oversubscription QEMU 7.2's multi-threaded mode let a guest run code that another vCPU had already
 * patched back (a kernel oops on an int3 in sched_clock_tick while static keys were switched, in a suite run).
 * IMG2VM_TCG_THREAD=single|multi chooses; unset is multi.
 */
export function tcgThreadFrom(env: NodeJS.ProcessEnv = process.env): TcgThread {
  const v = env.IMG2VM_TCG_THREAD;
  if (v === undefined || v === '' || v === 'multi') return 'multi';
  if (v === 'single') return 'single';
  throw new Img2vmError('usage', `invalid IMG2VM_TCG_THREAD "${v}"`, 'set it to single or multi, or unset it');
}

/**
 * KVM if it works, TCG otherwise; probed once per process. IMG2VM_ACCEL=kvm|tcg skips the probe
 * (CI machines know what they have).
 */
export function chooseAccel(env: NodeJS.ProcessEnv = process.env): Promise<AccelChoice> {
  const forced = env.IMG2VM_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return Promise.resolve({ accel: forced, reason: 'IMG2VM_ACCEL' });
  if (forced) {
    return Promise.reject(
      new Img2vmError('usage', `invalid IMG2VM_ACCEL "${forced}"`, 'set it to kvm or tcg, or unset it'),
    );
  }
  cached ??= probeKvm();
  return cached;
}

async function probeKvm(): Promise<AccelChoice> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is missing or not accessible' };
  }
  const dir = await mkdtemp(join(tmpdir(), 'img2vm-kvm-'));
  try {
    const kernel = join(dir, 'probe.bin');
    await writeFile(kernel, Buffer.from(KVM_PROBE_HEX, 'hex'));
    const child = spawnTool('qemu-system-x86_64', kvmProbeArgs(kernel), { stdio: 'pipe', dieWithParent: true });
    child.stdin?.end();
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.stdout?.resume();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void stopProcess(child, 500);
    }, KVM_PROBE_TIMEOUT_MS);
    const r = await child;
    clearTimeout(timer);
    if (timedOut)
      return { accel: 'tcg', reason: `a KVM probe guest did not finish within ${KVM_PROBE_TIMEOUT_MS / 1000} s` };
    if (r.exitCode === PROBE_OK) return { accel: 'kvm', reason: 'KVM probe passed' };
    const why = stderr
      .trim()
      .split('\n')
      .filter((l) => !/warning:/.test(l))
      .pop()
      ?.replace(/^qemu-system-x86_64: (?:\S+:\d+: )?/, '');
    return { accel: 'tcg', reason: `KVM probe failed${why ? `: ${why}` : ` (exit ${r.exitCode ?? r.signal})`}` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
