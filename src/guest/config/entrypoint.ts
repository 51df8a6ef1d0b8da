// The image's ENTRYPOINT/CMD, Env, WorkingDir and User as a boot service: a systemd unit, or an OpenRC service on Alpine.
import { Img2vmError } from '../../core/errors.js';
import type { ImageConfig } from '../../source/image.js';
import { ENV_NAME, environmentLine, execStart, shWord, systemdLiteral } from './quote.js';

export interface EntrypointSpec {
  argv: string[];
  /** In the image's order, later duplicates removed in favour of the last (docker's rule). */
  env: [string, string][];
  workdir: string;
  user?: string;
  group?: string;
  warnings: string[];
}

/** docker's PATH when the image sets none. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ACCOUNT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function bad(why: string): Img2vmError {
  return new Img2vmError(
    'badImage',
    `the image config's ${why}`,
    'fix the image config, or convert without --entrypoint-service',
  );
}

export function entrypointSpec(config: ImageConfig): EntrypointSpec {
  const c = config.config ?? {};
  const argv = [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])];
  if (!argv.length) {
    throw new Img2vmError(
      'usage',
      '--entrypoint-service: the image has no ENTRYPOINT or CMD',
      'drop --entrypoint-service, or convert an image that names a program to run',
    );
  }
  const warnings: string[] = [];
  const env = new Map<string, string>();
  for (const e of c.Env ?? []) {
    const eq = e.indexOf('=');
    const name = eq < 0 ? e : e.slice(0, eq);
    if (eq < 0 || !ENV_NAME.test(name)) {
      warnings.push(
        `the image's Env entry ${JSON.stringify(e.slice(0, 60))} is not NAME=value with a valid name; the service does not get it`,
      );
      continue;
    }
    env.delete(name);
    env.set(name, e.slice(eq + 1));
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  const workdir = c.WorkingDir || '/';
  if (!workdir.startsWith('/')) throw bad(`WorkingDir ${JSON.stringify(workdir)} is not an absolute path`);
  const spec: EntrypointSpec = { argv, env: [...env], workdir, warnings };
  if (c.User) {
    const [user, group, ...more] = c.User.split(':');
    if (more.length || !ACCOUNT.test(user ?? '') || (group !== undefined && !ACCOUNT.test(group)))
      throw bad(`User ${JSON.stringify(c.User)} is not user[:group]`);
    spec.user = user;
    if (group !== undefined) spec.group = group;
  }
  if (!spec.user && !env.has('HOME')) spec.env.push(['HOME', '/root']);
  return spec;
}

export const ENTRYPOINT_UNIT = '/etc/systemd/system/img2vm-entrypoint.service';

/** A unit whose output goes to the console as well as the journal, like `docker run`'s terminal. */
export function systemdEntrypointUnit(spec: EntrypointSpec): { unit: string; warnings: string[] } {
  const warnings = [...spec.warnings];
  const env: string[] = [];
  for (const [k, v] of spec.env) {
    // systemd before 248 (EL 8's 239) drops values with control characters other than tab.
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(v))
      warnings.push(
        `the image's Env ${k} holds control characters (a newline?); systemd cannot pass it, so the service does not get it`,
      );
    else env.push(environmentLine(k, v));
  }
  const unit = [
    "# Written by img2vm (--entrypoint-service): the image's ENTRYPOINT/CMD, with its Env, WorkingDir and User.",
    '[Unit]',
    "Description=img2vm: the image's entrypoint",
    // Ordered after the network is online when something else asks for that, without asking for it: a VM with
    // no NIC (img2vm test and run without --publish) would hold the start for wait-online's two minutes.
    'After=network.target network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${execStart(spec.argv)}`,
    `WorkingDirectory=${systemdLiteral(spec.workdir, 'WorkingDir')}`,
    ...(spec.user ? [`User=${spec.user}`] : []),
    ...(spec.group ? [`Group=${spec.group}`] : []),
    ...env,
    'StandardOutput=journal+console',
    'StandardError=journal+console',
    // Like `docker run` without --restart: when the program exits, it stays exited.
    'Restart=no',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
  return { unit, warnings };
}

export const OPENRC_SERVICE = '/etc/init.d/img2vm-entrypoint';
export const OPENRC_LAUNCHER = '/usr/local/lib/img2vm/entrypoint';

/**
 * OpenRC runs a launcher as root with its output on the console; the launcher sets the image's
 * environment and directory, then su-exec (installed at build time) drops to the image's user.
 */
export function openrcEntrypoint(spec: EntrypointSpec): { service: string; launcher: string } {
  const service = [
    '#!/sbin/openrc-run',
    "# Written by img2vm (--entrypoint-service): the image's ENTRYPOINT/CMD, with its Env, WorkingDir and User.",
    'description="img2vm: the image\'s entrypoint"',
    `command=${OPENRC_LAUNCHER}`,
    'command_background=yes',
    'pidfile=/run/img2vm-entrypoint.pid',
    'output_log=/dev/console',
    'error_log=/dev/console',
    '',
    'depend() {',
    '\tneed net localmount',
    '}',
    '',
  ].join('\n');
  const env = spec.env.map(([k, v]) => shWord(`${k}=${v}`, `Env ${k}`));
  const who = spec.user ? ['/sbin/su-exec', shWord(spec.group ? `${spec.user}:${spec.group}` : spec.user, 'User')] : [];
  // Without a user to switch to, sh looks the program up on the image's PATH, as docker does.
  const run = who.length
    ? [...who, ...spec.argv.map((a) => shWord(a, 'ENTRYPOINT/CMD'))]
    : ['/bin/sh', '-c', `'exec "$0" "$@"'`, ...spec.argv.map((a) => shWord(a, 'ENTRYPOINT/CMD'))];
  if (spec.argv[0]!.startsWith('-'))
    throw bad(`ENTRYPOINT/CMD starts with ${JSON.stringify(spec.argv[0])}, which is not a program`);
  const launcher = [
    '#!/bin/sh',
    "# Written by img2vm (--entrypoint-service): starts the image's ENTRYPOINT/CMD as docker would.",
    `cd ${shWord(spec.workdir, 'WorkingDir')} || exit 1`,
    `exec /usr/bin/env -i ${[...env, ...run].join(' ')}`,
    '',
  ].join('\n');
  return { service, launcher };
}
