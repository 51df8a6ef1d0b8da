// Volumes of `img2vm run IMAGE -v HOST:GUEST[:ro]`: one virtiofsd per host directory, serving it live to the guest over virtio-fs.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { Scope } from '../core/scope.js';
import { requireTool } from '../tools/index.js';
import { spawnTool, stopProcess, type ToolProcess } from '../tools/process.js';
import type { Share } from './qemu.js';
import type { Volume } from './run-config.js';

/** virtiofsd says this once its socket listens; QEMU may connect from then on. */
const LISTENING = /Waiting for vhost-user socket connection/;
const START_TIMEOUT_MS = 30_000;

/**
 * virtiofsd's argv. The namespace sandbox pivots into the shared directory (nothing outside it is reachable, and
 * a symlink in it resolves inside it), in its own pid and net namespaces. It runs as root, so the guest's owners and
 * modes are written as they are; cache=auto lets the guest cache what the host does not change under it. Without
 * CAP_MKNOD the guest cannot leave device nodes in a host directory (FIFOs and sockets need no capability).
 */
export function virtiofsdArgs(dir: string, socket: string): string[] {
  return [
    `--socket-path=${socket}`,
    '-o',
    `source=${dir}`,
    '-o',
    'sandbox=namespace',
    '-o',
    'cache=auto',
    '-o',
    'modcaps=-mknod',
  ];
}

/**
 * QEMU's virtiofsd has no read-only mode, and a guest's root could remount the share writable: for :ro it serves
 * a read-only bind mount of the directory, made in a mount namespace of its own (the host's mounts are untouched).
 * The script is fixed; the paths are its arguments, never part of it.
 */
export const READ_ONLY_SCRIPT = 'mount --bind -- "$1" "$1" && mount -o remount,bind,ro -- "$1" && shift && exec "$@"';

export function readOnlyArgs(virtiofsd: string, dir: string, socket: string): string[] {
  return [
    '--mount',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    READ_ONLY_SCRIPT,
    'sh',
    dir,
    virtiofsd,
    ...virtiofsdArgs(dir, socket),
  ];
}

/** The tag a volume's share is mounted by in the guest. */
export const shareTag = (i: number) => `img2vm-vol${i}`;

/** Refuses a volume whose host side is not a directory before anything starts (docker would create it; img2vm does not guess). */
export async function checkVolume(v: Volume): Promise<void> {
  const st = await stat(v.host).catch(() => undefined);
  if (!st?.isDirectory())
    throw new Img2vmError(
      'usage',
      `volume ${v.host}:${v.guest}: ${v.host} is not a directory`,
      'create the directory first (img2vm shares directories, not single files)',
    );
}

async function listening(p: ToolProcess, dir: string): Promise<void> {
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail('it did not start listening in 30 s'), START_TIMEOUT_MS);
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(
        new Img2vmError(
          'toolFailed',
          `virtiofsd for ${dir} failed: ${why}${err.trim() ? `: ${err.trim().split('\n').slice(-2).join(' | ')}` : ''}`,
          'volumes need root (virtiofsd sandboxes itself in namespaces)',
        ),
      );
    };
    p.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
      if (LISTENING.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void p.then((r) => fail(`it exited (${r.exitCode ?? r.signal})`));
  });
}

/** Starts one virtiofsd per volume (stopped by the scope); the shares for QEMU and the mounts for the run config. */
export async function startShares(
  volumes: readonly Volume[],
  dir: string,
  scope: Scope,
): Promise<{ shares: Share[]; mounts: { tag: string; path: string; readOnly: boolean }[] }> {
  const shares: Share[] = [];
  const mounts: { tag: string; path: string; readOnly: boolean }[] = [];
  for (const [i, v] of volumes.entries()) {
    await checkVolume(v);
    const socket = join(dir, `vol${i}.sock`);
    const p = v.readOnly
      ? spawnTool('unshare', readOnlyArgs(requireTool('virtiofsd'), v.host, socket), {
          stdio: 'pipe',
          dieWithParent: true,
        })
      : spawnTool('virtiofsd', virtiofsdArgs(v.host, socket), { stdio: 'pipe', dieWithParent: true });
    scope.defer(`stop virtiofsd for ${v.host}`, () => stopProcess(p));
    await listening(p, v.host);
    shares.push({ tag: shareTag(i), socket });
    mounts.push({ tag: shareTag(i), path: v.guest, readOnly: v.readOnly });
  }
  return { shares, mounts };
}
