// The one module that spawns host programs: a table of known tools (with their Debian packages) and run().
import { execa, type ResultPromise } from 'execa';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Img2vmError } from '../core/errors.js';

/** Every host program img2vm may start, and the Debian package that provides it. */
export const TOOLS = {
  mke2fs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  debugfs: 'e2fsprogs',
  tune2fs: 'e2fsprogs',
  'qemu-img': 'qemu-utils',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-system-aarch64': 'qemu-system-arm',
  'grub-mkimage': 'grub-common',
  'mkfs.fat': 'dosfstools',
  mcopy: 'mtools',
  mmd: 'mtools',
  sfdisk: 'fdisk',
  setfattr: 'attr',
  mknod: 'coreutils',
  mkfifo: 'coreutils',
  docker: 'docker.io',
  // The daemonless guest builders: runc runs the recipe's steps, getfattr reads the built tree's xattrs back.
  runc: 'runc',
  getfattr: 'attr',
  podman: 'podman',
  buildah: 'buildah',
  debootstrap: 'debootstrap',
  // Guest kernels compressed with something other than LZ4 or gzip (turned into vmlinux for microVMs); zstd also
  // decompresses zstd layers on a Node.js without zstd of its own (before 22.15).
  xz: 'xz-utils',
  zstd: 'zstd',
  bzip2: 'bzip2',
  lzop: 'lzop',
  // The img2vm guest kernel: Debian archive signatures, and modules.dep for kernel packages that ship none.
  setpriv: 'util-linux',
  gpgv: 'gpgv',
  depmod: 'kmod',
  // -v volumes of img2vm run IMAGE: QEMU's own virtiofsd (7.2 ships it in /usr/lib/qemu), and for :ro a
  // private read-only bind mount it serves from.
  virtiofsd: 'qemu-system-common',
  unshare: 'util-linux',
} as const;

export type ToolName = keyof typeof TOOLS;

/** What each tool is needed for, as `img2vm doctor` says it (a new tool needs a line here too). */
export const TOOL_PURPOSES: Readonly<Record<ToolName, string>> = {
  mke2fs: 'the tests and benchmarks (img2vm writes ext4 itself)',
  e2fsck: 'checking written file systems (the tests)',
  debugfs: 'reading file systems back (the tests)',
  tune2fs: 'inspecting file systems (the tests)',
  'qemu-img': 'vmdk, vhdx, vhd and vdi output; img2vm run/test on non-raw disks',
  'qemu-system-x86_64': 'img2vm run and img2vm test',
  'qemu-system-aarch64': 'img2vm run and img2vm test on arm64 disks',
  'grub-mkimage': 'GRUB for BIOS and UEFI boot (--boot hybrid, the default, needs both)',
  'mkfs.fat': 'the tests (img2vm writes the EFI System partition itself)',
  mcopy: 'reading EFI System partitions back (the tests)',
  mmd: 'making EFI System partitions by hand in the tests',
  sfdisk: 'reading partition tables back (the tests)',
  setfattr: "xattrs in the runc builder's bundle root",
  mknod: "device nodes in the runc builder's bundle root",
  mkfifo: "FIFOs in the runc builder's bundle root",
  docker: "building test fixture images by hand (img2vm itself talks to the daemon's API)",
  debootstrap: 'the demo image and the test fixtures',
  xz: '--format rootfs with an xz- or lzma-compressed kernel',
  zstd: 'zstd-compressed layers (buildah, podman, BuildKit) when Node.js is older than 22.15; zstd-compressed kernels and modules',
  bzip2: '--format rootfs with a bzip2-compressed kernel',
  lzop: '--format rootfs with an lzo-compressed kernel',
  setpriv: 'QEMU dies with img2vm, however img2vm ends (img2vm run/test)',
  gpgv: "checking the Debian archive's signature when img2vm fetches a kernel (--init img2vm)",
  depmod: 'the module order of fetched kernels whose package ships no modules.dep (--init img2vm)',
  runc: 'the daemonless runc builder (--builder runc; auto takes it when no Docker daemon answers)',
  podman: 'the podman builder (--builder podman)',
  buildah: 'img2vm build --builder buildah: a Dockerfile built with no daemon',
  getfattr: "reading xattrs back from the runc builder's bundle root",
  virtiofsd: 'volumes (-v HOST:GUEST) of img2vm run IMAGE, shared live over virtio-fs',
  unshare: 'read-only volumes (-v HOST:GUEST:ro) of img2vm run IMAGE: a read-only bind mount only virtiofsd sees',
};

const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** virtiofsd's places besides PATH: Debian's QEMU keeps it in /usr/lib/qemu, others in libexec. */
const VIRTIOFSD_DIRS = ['/usr/libexec', '/usr/lib/qemu', '/usr/local/libexec'];

/** Where to look for a tool, in order: IMG2VM_VIRTIOFSD names a virtiofsd; then PATH, sbin, and a tool's own places. */
function candidates(name: string): string[] {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN];
  const own = name === 'virtiofsd' ? VIRTIOFSD_DIRS : [];
  const first = name === 'virtiofsd' && process.env.IMG2VM_VIRTIOFSD ? [process.env.IMG2VM_VIRTIOFSD] : [];
  return [...first, ...[...dirs, ...own].map((d) => join(d, name))];
}

/** Finds a program on PATH (plus the sbin directories, which non-root PATHs often lack). */
export function which(name: string): string | undefined {
  for (const p of candidates(name)) {
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

export function requireTool(name: ToolName): string {
  const p = which(name);
  if (!p) {
    const pkg = TOOLS[name];
    throw new Img2vmError('toolMissing', `host tool "${name}" is missing`, `install it: apt-get install ${pkg}`);
  }
  return p;
}

/** Checks a set of tools at once, so the user learns every missing package in one go. */
export function preflight(names: readonly ToolName[]): void {
  const missing = [...new Set(names)].filter((n) => !which(n));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((n) => TOOLS[n]))];
  throw new Img2vmError(
    'toolMissing',
    `host tool${missing.length > 1 ? 's' : ''} missing: ${missing.join(', ')}`,
    `install: apt-get install ${pkgs.join(' ')}`,
  );
}

export interface RunOptions {
  input?: string | Buffer;
  signal?: AbortSignal;
  env?: Record<string, string>;
  cwd?: string;
  /** Called with each line the program prints (stdout and stderr), for verbose logs. */
  onLine?: (line: string) => void;
  /** Do not throw on a non-zero exit; return the result instead. */
  reject?: boolean;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a host tool with an exact argv; a failure becomes a toolFailed error quoting its stderr. */
export async function run(name: ToolName, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const bin = requireTool(name);
  const child = execa(bin, [...args], {
    input: opts.input,
    cancelSignal: opts.signal,
    env: { LC_ALL: 'C', ...opts.env },
    cwd: opts.cwd,
    reject: false,
    stripFinalNewline: true,
    forceKillAfterDelay: 3000,
  });
  if (opts.onLine) forwardLines(child, opts.onLine);
  const r = await child;
  if (r.isCanceled) throw opts.signal?.reason ?? new Error('canceled');
  const result = { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
  if (result.exitCode !== 0 && opts.reject !== false) {
    const why = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ');
    throw new Img2vmError(
      'toolFailed',
      `${name} failed (exit ${r.exitCode ?? r.signal}): ${why || 'no output'}`,
      `command: ${name} ${args.join(' ')}`,
    );
  }
  return result;
}

function forwardLines(child: ResultPromise, onLine: (line: string) => void): void {
  for (const s of [child.stdout, child.stderr]) {
    let buf = '';
    s?.on('data', (d: Buffer) => {
      buf += d.toString();
      // Progress meters (qemu-img -p) redraw their line with a carriage return: each redraw is a line too.
      let m;
      while ((m = /[\r\n]/.exec(buf))) {
        if (m.index > 0) onLine(buf.slice(0, m.index));
        buf = buf.slice(m.index + 1);
      }
    });
    s?.on('end', () => buf && onLine(buf));
  }
}

/**
 * Runs a docker credential helper (`docker-credential-NAME ACTION`, the server URL on stdin).
 * Helper names come from the user's docker config, so they cannot be in TOOLS; the name is
 * restricted to what a file name on PATH can safely be.
 */
export async function runCredentialHelper(
  helper: string,
  action: 'get',
  serverUrl: string,
  opts: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<RunResult> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(helper)) {
    throw new Img2vmError(
      'usage',
      `credential helper name "${helper}" in the docker config is not valid`,
      'fix credsStore or credHelpers in ~/.docker/config.json',
    );
  }
  const name = `docker-credential-${helper}`;
  const bin = which(name);
  if (!bin) {
    throw new Img2vmError(
      'toolMissing',
      `credential helper "${name}" is not installed`,
      `install it, or remove "${helper}" from credsStore/credHelpers in ~/.docker/config.json`,
    );
  }
  const r = await execa(bin, [action], {
    input: serverUrl,
    cancelSignal: opts.signal,
    timeout: opts.timeoutMs ?? 30_000,
    reject: false,
    stripFinalNewline: true,
    env: { LC_ALL: 'C' },
  });
  if (r.isCanceled) throw opts.signal?.reason ?? new Error('canceled');
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}
