// The spec img2vm writes for its own init (native/init.c reads it from /img2vm/spec in the initramfs): format and renderer.
import { isIP } from 'node:net';
import { Img2vmError } from '../core/errors.js';

/**
 * Format, version 3 (native/spec.c is the parser and refuses anything else; 2 added `service`, 3 `luks-uuid`):
 *
 *   img2vm-init 4          first line: magic and version
 *   KEY VALUE              one setting a line; VALUE is the rest of the line, escaped so any byte but NUL fits:
 *                          `\\` a backslash, `\n` a newline, `\xHH` any other byte below 0x20, 0x7f and above
 *                          (so the file is ASCII); repeatable keys (arg, service, env, module, module-optional, dns) keep their order
 *   end                    last line, so a truncated spec is refused rather than half-applied
 *
 * Unknown keys, a key given twice, bad escapes and raw control bytes are fatal in the init: the spec and the
 * init always ship together in one initramfs, so a mismatch is a bug, never something to guess around.
 */
export const INIT_SPEC_VERSION = 4;
/** Where the spec and the init live in the initramfs (paths without the leading slash, as cpio has them). */
export const INIT_SPEC_PATH = 'img2vm/spec';
export const INIT_MODULES_DIR = 'img2vm/modules';
const MAX_SPEC_BYTES = 1 << 20;

/**
 * What the init does once the root is mounted: `init` hands PID 1 over to the image's init (argv, default
 * /sbin/init); `workload` runs argv as a child and powers off with its exit status; `console` gives a getty when
 * `login` (a password is set and the image has getty and login), else argv or the user's shell, e.g. bash; with
 * `service`, that program runs beside the console.
 */
export type InitMode = 'init' | 'workload' | 'console';

export interface InitSpec {
  mode: InitMode;
  root: {
    /** The ext4 file system's UUID; the init finds the block device by reading superblocks. */
    uuid: string;
    fsType?: 'ext4' | 'ext3' | 'ext2';
    /** mount(8)-style options: ro, rw, noatime, relatime, nosuid, nodev, ... and file-system data. Default rw. */
    options?: readonly string[];
    /** How long to wait for the device to appear (default 30; the kernel parameter img2vm.rootwait wins). */
    waitSeconds?: number;
    /**
     * The root file system is inside the LUKS2 volume of this UUID: the init finds it, asks for the passphrase on
     * the console and maps it with dm-crypt (native/unlock.c). Only the UUID: no secret is in the spec.
     */
    luksUuid?: string;
  };
  /** The command: the image's ENTRYPOINT + CMD (workload), its init (init), or a shell (console; empty = user's shell). */
  argv?: readonly string[];
  /**
   * Console mode only: the image's ENTRYPOINT/CMD, started before the console in a session of its own (stdin
   * /dev/null, output on the console behind "service| "), restarted when it fails (native/service.c). env, cwd
   * and user are then the service's; the console is root's, in /.
   */
  service?: readonly string[];
  /** NAME=VALUE, the image's Env. The init adds PATH (Docker's default), HOME and HOSTNAME when missing. */
  env?: readonly string[];
  /** The image's WorkingDir (created when the image lacks it, as runc does). Default /. */
  cwd?: string;
  /** The image's User: name, uid, name:group, uid:gid, resolved through the image's /etc/passwd and /etc/group. */
  user?: string;
  hostname?: string;
  /** Console mode: offer a login prompt (a root password was set) instead of a passwordless shell. */
  login?: boolean;
  /** Absolute paths of kernel modules inside the initramfs, in load order (dependencies first). */
  modules?: readonly string[];
  /**
   * Of modules, those whose failure to load the init notes and goes on: CPU-specific speed-ups a CPU may lack (on an
   * arm64 CPU without the AES instructions aes_ce_cipher finds no device and aes_ce_blk then misses its symbols).
   */
  optionalModules?: readonly string[];
  /** auto: DHCP on every Ethernet interface, or ip= from the kernel command line; none: loopback only. */
  network?: 'auto' | 'none';
  /** Name servers for /etc/resolv.conf; when empty, those DHCP or ip= gave. */
  dns?: readonly string[];
  /** tmpfs: a fresh tmpfs on /tmp (as most inits do); image: the image's /tmp as it is. */
  tmp?: 'tmpfs' | 'image';
}

/** Escapes one value: the format is line-based and ASCII, and NUL cannot pass through a C string. */
export function escapeSpecValue(value: string, what: string): string {
  const bytes = Buffer.from(value, 'utf8');
  let out = '';
  for (const b of bytes) {
    if (b === 0) {
      throw new Img2vmError(
        'badImage',
        `${what} contains a NUL byte`,
        'a command, variable or path cannot hold NUL; fix the image config',
      );
    }
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x0a) out += '\\n';
    else if (b < 0x20 || b >= 0x7f) out += `\\x${b.toString(16).padStart(2, '0')}`;
    else out += String.fromCharCode(b);
  }
  return out;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const OPTION = /^[A-Za-z0-9_=.:/+-]+$/;

function check(spec: InitSpec): void {
  if (!UUID.test(spec.root.uuid)) throw new Error(`init spec: root UUID "${spec.root.uuid}" is not a UUID`);
  if (spec.root.luksUuid !== undefined && !UUID.test(spec.root.luksUuid))
    throw new Error(`init spec: LUKS UUID "${spec.root.luksUuid}" is not a UUID`);
  const wait = spec.root.waitSeconds;
  if (wait !== undefined && (!Number.isInteger(wait) || wait < 0 || wait > 3600)) {
    throw new Img2vmError('usage', `root wait of ${wait} s is out of range`, 'give whole seconds from 0 to 3600');
  }
  for (const o of spec.root.options ?? []) {
    if (!OPTION.test(o))
      throw new Img2vmError(
        'usage',
        `mount option "${o}" is not valid`,
        'mount options are words like noatime or errors=remount-ro',
      );
  }
  if (spec.hostname !== undefined && (spec.hostname.length > 64 || !HOSTNAME.test(spec.hostname))) {
    throw new Img2vmError(
      'usage',
      `hostname "${spec.hostname}" is not valid`,
      'use letters, digits, - and ., at most 64 characters',
    );
  }
  for (const d of spec.dns ?? []) {
    if (isIP(d) === 0)
      throw new Img2vmError('usage', `DNS server "${d}" is not an IP address`, 'give --dns an IPv4 or IPv6 address');
  }
  for (const e of spec.env ?? []) {
    if (e.indexOf('=') < 1)
      throw new Img2vmError('badImage', `environment entry "${e}" is not NAME=VALUE`, 'fix Env in the image config');
  }
  for (const m of spec.modules ?? []) {
    if (!m.startsWith('/')) throw new Error(`init spec: module path "${m}" is not absolute`);
  }
  for (const m of spec.optionalModules ?? []) {
    if (!spec.modules?.includes(m)) throw new Error(`init spec: optional module "${m}" is not among the modules`);
  }
  if (spec.service?.length && spec.mode !== 'console')
    throw new Error(`init spec: a service is for mode console, not ${spec.mode}`);
  if (spec.service?.length && !spec.service[0]) {
    throw new Img2vmError(
      'badImage',
      "the image's ENTRYPOINT/CMD starts with an empty program name",
      'fix the image config, or convert without --entrypoint-service',
    );
  }
  if (spec.mode === 'workload' && (spec.argv ?? []).length === 0) {
    throw new Img2vmError(
      'badImage',
      'the image has neither ENTRYPOINT nor CMD: there is no workload to run',
      'give the image a CMD, or boot it with a console or its own init',
    );
  }
}

/** A WorkingDir as the init gets it: absolute (a relative one is taken from /, as runtimes do), never empty. */
function cwdOf(cwd: string | undefined): string {
  if (!cwd) return '/';
  return cwd.startsWith('/') ? cwd : `/${cwd}`;
}

/** Renders the spec; the same spec always gives the same bytes. */
export function renderInitSpec(spec: InitSpec): Buffer {
  check(spec);
  const lines: string[] = [`img2vm-init ${INIT_SPEC_VERSION}`];
  const put = (key: string, value: string, what = key) => lines.push(`${key} ${escapeSpecValue(value, what)}`);
  put('mode', spec.mode);
  put('root-uuid', spec.root.uuid.toLowerCase());
  if (spec.root.luksUuid !== undefined) put('luks-uuid', spec.root.luksUuid.toLowerCase());
  put('root-fstype', spec.root.fsType ?? 'ext4');
  put('root-options', (spec.root.options ?? ['rw']).join(',') || 'rw');
  put('root-wait', String(spec.root.waitSeconds ?? 30));
  if (spec.hostname !== undefined) put('hostname', spec.hostname);
  for (const [i, a] of (spec.argv ?? []).entries()) put('arg', a, `argument ${i} of the command`);
  for (const [i, a] of (spec.service ?? []).entries()) put('service', a, `argument ${i} of the service`);
  for (const e of spec.env ?? []) put('env', e, `environment entry ${e.split('=')[0]}`);
  put('cwd', cwdOf(spec.cwd), 'WorkingDir');
  put('user', spec.user ?? '', 'User');
  put('login', spec.login ? 'yes' : 'no');
  for (const m of spec.modules ?? []) put('module', m);
  for (const m of spec.optionalModules ?? []) put('module-optional', m);
  put('net', spec.network ?? 'auto');
  for (const d of spec.dns ?? []) put('dns', d);
  put('tmp', spec.tmp ?? 'tmpfs');
  lines.push('end', '');
  const out = Buffer.from(lines.join('\n'), 'ascii');
  if (out.length > MAX_SPEC_BYTES) {
    throw new Img2vmError(
      'badImage',
      `the init spec would be ${out.length} bytes, more than the init reads (1 MiB)`,
      'the image command or environment is too large',
    );
  }
  return out;
}
