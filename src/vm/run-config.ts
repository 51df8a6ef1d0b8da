// docker run's per-run settings for `img2vm run IMAGE`: parsing its flags, the command as docker resolves it, and the run config disk img2vm's init reads (native/runcfg.c).
import { isIP } from 'node:net';
import { isAbsolute, posix } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import { escapeSpecValue } from '../guest/init-spec.js';

export const RUN_CONFIG_SERIAL = 'img2vm-run';
/** The virtio-serial port that is the workload's stdin with -i and no -t (native/run.c opens it). */
export const STDIN_PORT = 'img2vm.stdin';
/** The virtio-serial port of -t's window size changes, "ROWS COLS" lines (native/runcfg.c relays them to the tty). */
export const WINSIZE_PORT = 'img2vm.winsize';
/** The kernel parameter that tells the init to wait for and read the run config disk. */
export const RUN_CONFIG_PARAM = 'img2vm.run=1';
const MAX_BYTES = 1 << 20;
/** The disk is padded to whole 4 KiB blocks (a block device has no partial sectors); the init stops at the first NUL. */
const BLOCK = 4096;

export interface Volume {
  /** The host directory, absolute. */
  host: string;
  /** Where the guest sees it, absolute. */
  guest: string;
  readOnly: boolean;
}

export interface RunConfig {
  /** The command, as docker resolves it; undefined keeps what the image (the disk's spec) runs. */
  argv?: string[];
  /** NAME=VALUE, set over the image's Env. */
  env: string[];
  cwd?: string;
  user?: string;
  /** -t: a terminal in the guest with the host's window size. */
  tty: boolean;
  /** -i: the user's input reaches the workload. */
  interactive: boolean;
  rows?: number;
  cols?: number;
  /** The virtio-fs shares to mount: tag and guest path. */
  mounts: { tag: string; path: string; readOnly: boolean }[];
}

const usage = (message: string, hint: string) => new Img2vmError('usage', message, hint);

/**
 * The workload's argv as `docker run` makes it: --entrypoint replaces the image's ENTRYPOINT and drops its CMD;
 * arguments after IMAGE replace CMD. undefined when the run changes neither (the disk runs what the image says).
 */
export function resolveCommand(
  imageEntrypoint: readonly string[],
  entrypoint: string | undefined,
  args: string[],
): string[] | undefined {
  if (entrypoint === undefined && args.length === 0) return undefined;
  const argv =
    entrypoint !== undefined ? [...(entrypoint ? [entrypoint] : []), ...args] : [...imageEntrypoint, ...args];
  if (argv.length === 0)
    throw new Img2vmError('usage', 'no command: --entrypoint "" and no COMMAND', 'give a command after the image', {
      exitCode: 125,
    });
  return argv;
}

const ENV_NAME = /^[^=\s][^=]*$/;

/** One -e/--env value (or --env-file line): NAME=VALUE as given; a bare NAME takes the host's value, or is left out. */
export function envEntry(text: string, host: NodeJS.ProcessEnv): string | undefined {
  const eq = text.indexOf('=');
  const name = eq < 0 ? text : text.slice(0, eq);
  if (!ENV_NAME.test(name))
    throw usage(`invalid environment variable "${text}"`, 'use -e NAME=VALUE, or -e NAME to pass the host value');
  if (eq >= 0) return text;
  const value = host[name];
  return value === undefined ? undefined : `${name}=${value}`;
}

/** An --env-file's text as docker reads it: one entry a line, blank lines and lines starting with # skipped. */
export function envFileEntries(text: string, host: NodeJS.ProcessEnv): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/^\s+/, ''))
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => envEntry(l, host))
    .filter((e): e is string => e !== undefined);
}

export interface PublishSpec {
  address: string;
  host: number;
  guest: number;
}

function port(text: string | undefined): number {
  const n = Number(text);
  return text !== undefined && /^\d{1,5}$/.test(text) && n >= 1 && n <= 65535 ? n : 0;
}

/** -p [ADDRESS:]HOST:GUEST[/tcp], on 127.0.0.1 unless an address is given (docker's default is every address). */
export function parsePublishFlag(text: string): PublishSpec {
  const bad = () =>
    usage(
      `invalid --publish "${text}"`,
      'use [ADDRESS:]HOST:GUEST with TCP ports, e.g. -p 8080:80 or -p 0.0.0.0:8080:80',
    );
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(text.trim());
  if (!m) throw bad();
  if (m[4] === 'udp') throw usage(`--publish ${text}: UDP is not forwarded`, 'only TCP ports can be published');
  const address = m[1]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1';
  const host = port(m[2]);
  const guest = port(m[3]);
  if (!host || !guest || isIP(address) !== 4) throw bad();
  return { address, host, guest };
}

/** -v HOST:GUEST[:ro|rw]: a host directory (absolute), seen live in the guest. */
export function parseVolume(text: string): Volume {
  const parts = text.split(':');
  const mode = parts.length === 3 ? parts[2] : 'rw';
  const [host, guest] = parts;
  if (parts.length < 2 || parts.length > 3 || !host || !guest || (mode !== 'ro' && mode !== 'rw'))
    throw usage(`invalid --volume "${text}"`, 'use HOST_DIR:GUEST_DIR or HOST_DIR:GUEST_DIR:ro, both absolute');
  if (!isAbsolute(host))
    throw usage(
      `--volume ${text}: ${host} is not an absolute path`,
      'img2vm has no named volumes: give a host directory, e.g. -v "$PWD/data:/data"',
    );
  if (!guest.startsWith('/') || posix.normalize(guest) === '/' || guest.split('/').includes('..'))
    throw usage(`--volume ${text}: the guest path must be absolute and not /`, 'e.g. -v /srv/data:/data');
  return { host, guest: posix.normalize(guest).replace(/\/+$/, ''), readOnly: mode === 'ro' };
}

/** The run config as the init reads it: escaped KEY VALUE lines, then NUL bytes to a whole block. */
export function renderRunConfig(c: RunConfig): Buffer {
  const lines = ['img2vm-run 1'];
  const put = (key: string, value: string, what: string) => lines.push(`${key} ${escapeSpecValue(value, what)}`);
  for (const [i, a] of (c.argv ?? []).entries()) put('arg', a, `argument ${i} of the command`);
  for (const e of c.env) {
    if (e.indexOf('=') < 1) throw usage(`environment entry "${e}" is not NAME=VALUE`, 'use -e NAME=VALUE');
    put('env', e, `environment variable ${e.split('=')[0]}`);
  }
  if (c.cwd !== undefined) {
    if (!c.cwd.startsWith('/'))
      throw usage(`--workdir ${c.cwd} is not absolute`, 'give an absolute path, e.g. -w /src');
    put('cwd', c.cwd, '--workdir');
  }
  if (c.user !== undefined) put('user', c.user, '--user');
  put('tty', c.tty ? 'yes' : 'no', 'tty');
  put('interactive', c.interactive ? 'yes' : 'no', 'interactive');
  if (c.rows && c.cols) {
    put('rows', String(c.rows), 'rows');
    put('cols', String(c.cols), 'cols');
  }
  for (const m of c.mounts) put('volume', `${m.readOnly ? 'ro' : 'rw'} ${m.tag} ${m.path}`, `volume ${m.path}`);
  lines.push('end', '');
  const text = Buffer.from(lines.join('\n'), 'ascii');
  if (text.length >= MAX_BYTES)
    throw usage(`the run's command and environment take ${text.length} bytes`, 'img2vm passes at most 1 MiB of them');
  const out = Buffer.alloc(Math.ceil((text.length + 1) / BLOCK) * BLOCK);
  text.copy(out);
  return out;
}
