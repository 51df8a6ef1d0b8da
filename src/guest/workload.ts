// What img2vm's init does with an image (--init img2vm): run its ENTRYPOINT/CMD as the workload, hand PID 1 to
// its own init system, or give the console (with --entrypoint-service, the command as a service beside it) —
// decided from the image config alone, as `docker run` would read it.
import { posix } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { ImageFacts, Userland } from '../core/plan.js';
import { CONSOLE_PROGRAMS } from '../rootfs/tree-guest.js';

export type InitDecision = {
  mode: 'workload' | 'init' | 'console';
  argv: string[];
  /** Console mode with --entrypoint-service: the image's ENTRYPOINT + CMD, run beside the console. */
  service?: string[];
  user: string;
  cwd: string;
  login: boolean;
  why: string;
};

/** Programs that are an init system when they are the whole command (CMD ["/sbin/init"], systemd images). */
const INIT_SYSTEMS = new Set(['init', 'systemd', 'openrc-init', 'runit-init', 'tini-init']);
/** A shell alone is not a workload: `docker run -it debian` gives bash, so img2vm gives the console. */
const SHELLS = new Set(['sh', 'bash', 'ash', 'dash', 'zsh', 'ksh', 'mksh', 'fish', 'csh', 'tcsh', 'busybox']);

export function decideInit(
  p: NonNullable<ImageFacts['process']>,
  password: boolean,
  userland: Userland | undefined,
  service = false,
): InitDecision {
  const argv = [...p.entrypoint, ...p.cmd];
  // No User means uid 0 even without an /etc/passwd, as docker runs it; the init resolves names in the image.
  const base = { user: p.user, cwd: p.cwd || '/' };
  if (service) return serviceDecision(argv, base, consoleLogin(password, userland), userland);
  if (argv.length === 0)
    return {
      ...base,
      mode: 'console',
      argv: [],
      login: consoleLogin(password, userland),
      why: 'the image has no ENTRYPOINT or CMD: a console',
    };
  const prog = posix.basename(argv[0]!);
  if (INIT_SYSTEMS.has(prog) && p.entrypoint.length === 0) {
    return { ...base, mode: 'init', argv, login: false, why: `CMD ${argv[0]} is an init system: it becomes PID 1` };
  }
  if (argv.length === 1 && SHELLS.has(prog)) {
    const login = consoleLogin(password, userland);
    return {
      ...base,
      mode: 'console',
      argv,
      login,
      why: `CMD is a bare shell (${argv[0]}): ${login ? 'a login prompt' : 'a root shell'} on the console`,
    };
  }
  return {
    ...base,
    mode: 'workload',
    argv,
    login: false,
    why: 'ENTRYPOINT/CMD runs as the workload; its exit status ends the VM',
  };
}

/**
 * Whether the console is a login prompt. A password asks for one; without a getty and a login the init would start a
 * root shell that asks for nothing, so that is refused here, before anything is written. Until the image has been
 * read (userland unknown) nothing is refused.
 */
function consoleLogin(password: boolean, userland: Userland | undefined): boolean {
  if (!password || !userland) return false;
  if (userland.login) return true;
  const any = (paths: readonly string[]) => `${paths.slice(0, -1).join(', ')} or ${paths.at(-1)}`;
  throw new Img2vmError(
    'usage',
    `--password is for a console login, but the image has no getty and login (img2vm's init looks for an executable ${any(CONSOLE_PROGRAMS.getty)}, and ${any(CONSOLE_PROGRAMS.login)}): its console would be a root shell that asks for no password`,
    "use an image that has a getty and login at those paths (util-linux's agetty and login, or busybox's getty and login applets), or add them; " +
      'or give --init distro where img2vm has a template for the distribution (a login prompt, and --ssh-key for SSH); ' +
      'or leave --password out to accept a root shell on the console',
  );
}

/**
 * --entrypoint-service: the console as in console mode (root's: the image's User and WorkingDir are the
 * service's), and the command beside it, restarted when it fails; only the console's end ends the VM.
 */
function serviceDecision(
  argv: string[],
  base: { user: string; cwd: string },
  login: boolean,
  userland: Userland | undefined,
): InitDecision {
  if (argv.length === 0) {
    throw new Img2vmError(
      'usage',
      '--entrypoint-service: the image has no ENTRYPOINT or CMD',
      'drop --entrypoint-service, or convert an image that names a program to run',
    );
  }
  // Known only once the image is read; before that the plan assumes a console is possible.
  if (userland && !login && !userland.shell) {
    throw new Img2vmError(
      'usage',
      '--entrypoint-service keeps a console beside the service, but the image has no shell for it (/bin/bash, /bin/sh) and no getty and login',
      'leave --entrypoint-service out to run the command as the workload, or use an image with a shell',
    );
  }
  const prompt = login ? 'a login prompt' : 'a root shell';
  return {
    ...base,
    mode: 'console',
    argv: [],
    service: argv,
    login,
    why: `ENTRYPOINT/CMD runs as a service (restarted when it fails) beside ${prompt} on the console; the console's end ends the VM`,
  };
}

/** The process an image config describes, as the init spec takes it. */
export function processOf(
  config:
    | {
        Entrypoint?: string[] | null;
        Cmd?: string[] | null;
        Env?: string[] | null;
        WorkingDir?: string | null;
        User?: string | null;
      }
    | null
    | undefined,
): NonNullable<ImageFacts['process']> {
  return {
    entrypoint: config?.Entrypoint ?? [],
    cmd: config?.Cmd ?? [],
    env: config?.Env ?? [],
    cwd: config?.WorkingDir || '/',
    user: config?.User || '',
  };
}
