// The one declaration of every conversion option: flag, help, validation and default. The CLI, the help text
// and the config-file schema are all derived from this table; nothing maps options by hand.
import { z } from 'zod';
import { parseSize } from './units.js';
import { Img2vmError } from './errors.js';

export const BOOT_MODES = ['hybrid', 'bios', 'uefi'] as const;
export const BOOTLOADERS = ['grub', 'systemd-boot'] as const;
export const PARTITION_TABLES = ['mbr', 'gpt'] as const;
export const INIT_MODES = ['auto', 'distro', 'img2vm', 'image'] as const;
export const BUILDERS = ['auto', 'docker', 'podman', 'runc'] as const;
export const PULL_POLICIES = ['always', 'missing', 'never'] as const;

/** A size given as bytes (number) or text with a unit ("4G", "512M"), validated without throwing. */
const size = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v > 0) return v;
    ctx.issues.push({ code: 'custom', message: `invalid size ${v}: a positive whole number of bytes`, input: v });
    return z.NEVER;
  }
  try {
    return parseSize(v);
  } catch {
    ctx.issues.push({
      code: 'custom',
      message: `invalid size "${v}": use a number with an optional unit, e.g. 512M, 4G`,
      input: v,
    });
    return z.NEVER;
  }
});

const hostname = z
  .string()
  .regex(
    /^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/,
    'a hostname is 1-63 letters, digits and inner hyphens',
  );

/** Where an option may appear: every option can be set in a config file; `global` ones also apply to other commands. */
export interface OptionSpec<S extends z.ZodType = z.ZodType> {
  /** Commander flags, e.g. '-o, --output <file>'; the long name is also the config-file key. */
  flags: string;
  help: string;
  schema: S;
  /** The default as the help shows it (the schema applies it). */
  defaultHelp?: string;
  /** The flag may be given more than once; values collect into an array. */
  repeatable?: boolean;
  /** Not in the help: kept for compatibility (e.g. --raw). */
  hidden?: boolean;
}

function opt<S extends z.ZodType>(spec: OptionSpec<S>): OptionSpec<S> {
  return spec;
}

/** Every option of `img2vm convert` and `img2vm plan`, keyed by the property name the library takes. */
export const CONVERT_OPTIONS = {
  output: opt({
    flags: '-o, --output <file>',
    help: 'the disk to write; format from the extension unless --format (not needed with --push)',
    schema: z.string().min(1, 'the output path is empty').optional(),
  }),
  format: opt({
    flags: '--format <format>',
    help: 'output format: raw | qcow2 | vmdk | vhdx | vhd | vdi | rootfs | containerdisk (.img = raw)',
    schema: z.string().min(1).optional(),
  }),
  size: opt({
    flags: '--size <size>',
    help: 'disk size, e.g. 4G',
    defaultHelp: 'the content plus headroom',
    schema: size.optional(),
  }),
  boot: opt({
    flags: '--boot <mode>',
    help: 'firmware the disk boots with (hybrid: both BIOS and UEFI)',
    schema: z.enum(BOOT_MODES).default('hybrid'),
    defaultHelp: 'hybrid',
  }),
  bootloader: opt({
    flags: '--bootloader <name>',
    help: 'boot loader (systemd-boot needs --boot uefi)',
    schema: z.enum(BOOTLOADERS).default('grub'),
    defaultHelp: 'grub',
  }),
  partitionTable: opt({
    flags: '--partition-table <kind>',
    help: 'partition table',
    defaultHelp: 'mbr for --boot bios, gpt otherwise',
    schema: z.enum(PARTITION_TABLES).optional(),
  }),
  bootPartition: opt({
    flags: '--boot-partition <size>',
    help: 'a separate ext4 /boot partition of this size, e.g. 512M',
    schema: size.optional(),
  }),
  init: opt({
    flags: '--init <mode>',
    help: "how the VM boots: distro (the distribution's kernel and init, installed from a template by a builder), img2vm (img2vm's own kernel and init: any image, nothing installed), image (the image brings its own: same as --raw); auto: distro when the distribution has a template and a builder is available, else img2vm",
    schema: z.enum(INIT_MODES).default('auto'),
    defaultHelp: 'auto',
  }),
  kernel: opt({
    flags: '--kernel <src>',
    help: 'kernel for --init img2vm: debian-archive[:SUITE], a .deb, a vmlinuz path (with --kernel-modules), or an image ref holding /kernel or /boot/vmlinuz-*',
    defaultHelp: "Debian's cloud kernel (debian-archive:trixie)",
    schema: z.string().min(1).optional(),
  }),
  kernelModules: opt({
    flags: '--kernel-modules <dir>',
    help: 'the lib/modules/VERSION directory of a --kernel vmlinuz path',
    schema: z.string().min(1).optional(),
  }),
  kernelMirror: opt({
    flags: '--kernel-mirror <url>',
    help: 'Debian mirror or apt proxy for the kernel fetch (an http one is used as given)',
    defaultHelp: 'https://deb.debian.org/debian',
    schema: z.string().url('a URL, e.g. https://deb.debian.org/debian').optional(),
  }),
  kernelNoSecurity: opt({
    flags: '--kernel-no-security',
    help: "fetch Debian's cloud kernel without its -security suite, for a mirror that has none: the kernel may lack security fixes (not advised)",
    schema: z.boolean().default(false),
  }),
  raw: opt({
    flags: '--raw',
    help: 'the image already has a kernel and init: install nothing (same as --init image)',
    schema: z.boolean().default(false),
  }),
  kernelCmdline: opt({
    flags: '--kernel-cmdline <args>',
    help: 'appended to the kernel command line',
    schema: z.string().optional(),
  }),
  password: opt({
    flags: '--password <pass>',
    help: 'root password (otherwise root has no password login)',
    schema: z.string().min(1, 'the password is empty').optional(),
  }),
  hostname: opt({
    flags: '--hostname <name>',
    help: 'guest hostname',
    defaultHelp: 'from the image name',
    schema: hostname.optional(),
  }),
  sshKey: opt({
    flags: '--ssh-key <file>',
    help: "an authorized public key for root (and --user); installs and enables an SSH server whose host keys are made on the VM's first boot",
    schema: z.string().min(1).optional(),
  }),
  user: opt({
    flags: '--user <name>',
    help: 'a sudo user (log in with --password and/or --ssh-key)',
    schema: z.string().min(1).optional(),
  }),
  dns: opt({
    flags: '--dns <ip>',
    help: 'a static DNS server instead of the one DHCP offers (repeatable, or comma-separated)',
    schema: z.array(z.string().min(1)).optional(),
    repeatable: true,
  }),
  cloudInit: opt({
    flags: '--cloud-init',
    help: 'install cloud-init with its NoCloud data source (does not hold the boot without a seed)',
    schema: z.boolean().default(false),
  }),
  entrypointService: opt({
    flags: '--entrypoint-service',
    help: "run the image's ENTRYPOINT/CMD (with its Env, WorkingDir and User) as a service at boot, output on the console",
    schema: z.boolean().default(false),
  }),
  builder: opt({
    flags: '--builder <builder>',
    help: 'what runs the distribution template',
    schema: z.enum(BUILDERS).default('auto'),
    defaultHelp: 'auto',
  }),
  platform: opt({
    flags: '--platform <os/arch>',
    help: 'which image of a multi-platform index',
    defaultHelp: "the host's",
    schema: z.string().min(1).optional(),
  }),
  pull: opt({
    flags: '--pull <policy>',
    help: 'when to pull from the registry, as docker spells it',
    schema: z.enum(PULL_POLICIES).default('missing'),
    defaultHelp: 'missing',
  }),
  insecureRegistries: opt({
    flags: '--insecure-registry <host>',
    help: 'reach this registry over plain HTTP (repeatable; loopback registries always are)',
    schema: z.array(z.string().min(1)).default([]),
    repeatable: true,
  }),
  verifyCache: opt({
    flags: '--verify-cache',
    help: 'hash cached registry layers again before using them (they are verified once, when they enter the cache)',
    schema: z.boolean().default(false),
  }),
  compress: opt({
    flags: '--compress',
    help: 'compressed qcow2 (also inside a containerdisk)',
    schema: z.boolean().default(false),
  }),
  push: opt({
    flags: '--push <ref>',
    help: 'push the disk to this registry (REGISTRY/REPO:TAG): a containerdisk as its image, any other format as an OCI artifact (application/vnd.img2vm.disk.v1); with -o also keep the file',
    schema: z.string().min(1, 'the --push reference is empty').optional(),
  }),
  luksPassword: opt({
    flags: '--luks-password <pass>',
    help: 'encrypt the root file system with LUKS2 under this passphrase (written by img2vm itself, no root); /boot goes to a clear partition. --luks-password-file keeps it out of the process list',
    schema: z.string().min(1, 'the LUKS passphrase is empty').optional(),
  }),
  luksPasswordFile: opt({
    flags: '--luks-password-file <file>',
    help: 'as --luks-password, the passphrase read from this file (one trailing newline dropped)',
    schema: z.string().min(1).optional(),
  }),
  luksMasterKeyFile: opt({
    flags: '--luks-master-key-file <file>',
    help: 'tests and CI only: the LUKS2 master key (64 bytes) from this file instead of a random one, so the same options give the same bytes; anyone with the file can read the disk',
    schema: z.string().min(1).optional(),
  }),
  cacheTo: opt({
    flags: '--cache-to <repo>',
    help: 'push the finished disk to this registry repository as an OCI artifact tagged by its key (everything that decides its bytes), and keep it in the local cache; needs --seed',
    schema: z.string().min(1, 'the --cache-to repository is empty').optional(),
  }),
  cacheFrom: opt({
    flags: '--cache-from <repo>',
    help: 'take the disk from the local cache, else from this registry repository, when one with the same key is there, instead of converting; needs --seed',
    schema: z.string().min(1, 'the --cache-from repository is empty').optional(),
  }),
  seed: opt({
    flags: '--seed <seed>',
    help: 'fixes UUIDs and every other random choice (reproducible output)',
    schema: z.string().optional(),
  }),
  config: opt({
    flags: '--config <file>',
    help: 'these options from a YAML or JSON file, keyed by the long flag names (plus image:); flags given here win',
    schema: z.string().min(1, 'the config file name is empty').optional(),
  }),
} as const;

/** Output options every command takes. */
export const GLOBAL_OPTIONS = {
  json: opt({ flags: '--json', help: 'print one JSON result object', schema: z.boolean().optional() }),
  quiet: opt({ flags: '-q, --quiet', help: 'print nothing but errors', schema: z.boolean().optional() }),
  verbose: opt({ flags: '-v, --verbose', help: 'show build output and details', schema: z.boolean().optional() }),
} as const;

type Shape<T extends Record<string, OptionSpec>> = { [K in keyof T]: T[K]['schema'] };

function shapeOf<T extends Record<string, OptionSpec>>(table: T): Shape<T> {
  return Object.fromEntries(Object.entries(table).map(([k, v]) => [k, v.schema])) as Shape<T>;
}

/** The long flag name without dashes: the key of an option in a config file and in messages. */
export function longName(spec: OptionSpec): string {
  const m = /--([a-z0-9-]+)/.exec(spec.flags);
  if (!m) throw new Error(`option without a long flag: ${spec.flags}`);
  return m[1]!;
}

export const ConvertOptionsSchema = z
  .object({ image: z.string().min(1, 'the image reference is empty'), ...shapeOf(CONVERT_OPTIONS) })
  .strict()
  .superRefine((o, ctx) => {
    if (o.raw && o.init !== 'auto' && o.init !== 'image') {
      ctx.addIssue({
        code: 'custom',
        path: ['raw'],
        message: `--raw means --init image, but --init ${o.init} was given too; give one of them`,
      });
    }
    if (o.luksPassword !== undefined && o.luksPasswordFile !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['luksPasswordFile'],
        message: 'give the passphrase once: --luks-password or --luks-password-file',
      });
    }
    if (o.luksMasterKeyFile !== undefined && o.luksPassword === undefined && o.luksPasswordFile === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['luksMasterKeyFile'],
        message: 'a master key is for a LUKS2 root: give --luks-password or --luks-password-file too',
      });
    }
  })
  .transform((o) => {
    const luks = o.luksPassword !== undefined || o.luksPasswordFile !== undefined;
    // An encrypted root needs a clear /boot beside it for GRUB to read the kernel from (systemd-boot reads the ESP).
    const bootPartition =
      o.bootPartition ?? (luks && o.bootloader !== 'systemd-boot' ? LUKS_BOOT_PARTITION : undefined);
    return { ...o, init: o.raw ? ('image' as const) : o.init, bootPartition, luks };
  });

/** The /boot partition an encrypted root gets when --boot-partition does not size it: room for a few kernels. */
export const LUKS_BOOT_PARTITION = 512 * 1024 * 1024;

export type ConvertOptionsInput = z.input<typeof ConvertOptionsSchema>;
export type ConvertOptions = z.output<typeof ConvertOptionsSchema>;

/** Validates options from any source, reporting every problem at once with its option name. */
export function parseConvertOptions(input: unknown): ConvertOptions {
  const r = ConvertOptionsSchema.safeParse(input);
  if (r.success) return r.data;
  const names = new Map<string, string>(Object.entries(CONVERT_OPTIONS).map(([k, v]) => [k, `--${longName(v)}`]));
  const msg = r.error.issues
    .map((i) => {
      const key = String(i.path[0] ?? '');
      const name = key === 'image' ? 'image' : (names.get(key) ?? (key || 'options'));
      const rest = i.path.slice(1).join('.');
      const text =
        i.code === 'unrecognized_keys'
          ? `unknown option${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}`
          : i.message;
      return `${name}${rest ? `[${rest}]` : ''}: ${text}`;
    })
    .join('; ');
  throw new Img2vmError('usage', `invalid options: ${msg}`, 'see img2vm --help');
}

/** A hostname from the image name: "ghcr.io/acme/web-app:1.2" → "web-app". */
export function hostnameFromImage(ref: string): string {
  const noTransport = ref.replace(/^(docker-daemon|docker-archive|docker|oci|oci-archive):(\/\/)?/, '');
  const last =
    noTransport
      .replace(/@.*$/, '')
      .replace(/:[^/]*$/, '')
      .split('/')
      .pop() ?? '';
  const h = last
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return h || 'img2vm';
}
