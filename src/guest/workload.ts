// What img2vm's init does with an image (--init img2vm): run its ENTRYPOINT/CMD as the workload, hand PID 1 to
// its own init system, or give the console — decided from the image config alone, as `docker run` would read it.
import { posix } from 'node:path';
import type { ImageFacts, Userland } from '../core/plan.js';

export type InitDecision = { mode: 'workload' | 'init' | 'console'; argv: string[]; user: string; cwd: string; login: boolean; why: string };

/** Programs that are an init system when they are the whole command (CMD ["/sbin/init"], systemd images). */
const INIT_SYSTEMS = new Set(['init', 'systemd', 'openrc-init', 'runit-init', 'tini-init']);
/** A shell alone is not a workload: `docker run -it debian` gives bash, so img2vm gives the console. */
const SHELLS = new Set(['sh', 'bash', 'ash', 'dash', 'zsh', 'ksh', 'mksh', 'fish', 'csh', 'tcsh', 'busybox']);

export function decideInit(p: NonNullable<ImageFacts['process']>, password: boolean, userland: Userland | undefined): InitDecision {
  const argv = [...p.entrypoint, ...p.cmd];
  // No User means uid 0 even without an /etc/passwd, as docker runs it; the init resolves names in the image.
  const base = { user: p.user, cwd: p.cwd || '/' };
  const login = password && (userland?.login ?? false);
  if (argv.length === 0) return { ...base, mode: 'console', argv: [], login, why: 'the image has no ENTRYPOINT or CMD: a console' };
  const prog = posix.basename(argv[0]!);
  if (INIT_SYSTEMS.has(prog) && p.entrypoint.length === 0) {
    return { ...base, mode: 'init', argv, login: false, why: `CMD ${argv[0]} is an init system: it becomes PID 1` };
  }
  if (argv.length === 1 && SHELLS.has(prog)) {
    return { ...base, mode: 'console', argv, login, why: `CMD is a bare shell (${argv[0]}): ${login ? 'a login prompt' : 'a root shell'} on the console` };
  }
  return { ...base, mode: 'workload', argv, login: false, why: 'ENTRYPOINT/CMD runs as the workload; its exit status ends the VM' };
}

/** The process an image config describes, as the init spec takes it. */
export function processOf(config: { Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[] | null; WorkingDir?: string | null; User?: string | null } | null | undefined): NonNullable<ImageFacts['process']> {
  return {
    entrypoint: config?.Entrypoint ?? [],
    cmd: config?.Cmd ?? [],
    env: config?.Env ?? [],
    cwd: config?.WorkingDir || '/',
    user: config?.User || '',
  };
}
