// `img2vm doctor`: which host tools and services are present, what each is for, and how to install what is missing.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { SYSTEMD_BOOT_EFI } from '../boot/systemd-boot.js';
import { nativeInitPath } from '../guest/initramfs.js';
import { ARCH, type GuestArch } from '../core/arch.js';
import type { BinfmtFacts } from '../core/binfmt.js';
import { hostArch } from '../guest/arch.js';
import { emulationFix, emulationFor, parseBinfmt } from '../guest/binfmt.js';
import { readBinfmtFiles } from '../tools/binfmt.js';
import { ExitCode } from '../core/errors.js';
import { parseConvertOptions } from '../core/options.js';
import { resolveFormat } from '../output/index.js';
import { conversionTools } from '../convert.js';
import { DockerClient } from '../source/docker-api.js';
import { TOOL_PURPOSES, TOOLS, which, type ToolName } from '../tools/index.js';
import { stdout, stdoutJson } from './print.js';

export interface Check {
  name: string;
  ok: boolean;
  /** Where it was found, or why not. */
  detail: string;
  /** The Debian package that provides it. */
  package?: string;
  fix?: string;
  /** What needs it. */
  for: string;
  /** `img2vm IMAGE -o disk.qcow2` with every default needs it: doctor fails without it. */
  required: boolean;
}

/** The example every guide starts with; its needs decide doctor's exit status. */
export const DEFAULT_CONVERSION = { image: 'debian:12', output: 'disk.qcow2' };

/** The host tools the default conversion checks for before it starts (as convert's preflight derives them). */
export function defaultConversionTools(): Set<ToolName> {
  const o = parseConvertOptions(DEFAULT_CONVERSION);
  return new Set(conversionTools(o, resolveFormat(o.output!, o.format)));
}

export interface DoctorEnv {
  /** Finds a program (PATH by default). */
  which?: (name: string) => string | undefined;
  exists?: (path: string) => boolean;
  /** Resolves when the Docker daemon answers. */
  pingDocker?: () => Promise<void>;
  isRoot?: boolean;
  /** What binfmt_misc runs (default: this host's /proc/sys/fs/binfmt_misc), and the host's architecture. */
  binfmt?: BinfmtFacts;
  hostArch?: string;
}

export async function doctorChecks(env: DoctorEnv = {}): Promise<Check[]> {
  const find = env.which ?? which;
  const exists = env.exists ?? existsSync;
  const needed = defaultConversionTools();
  const checks: Check[] = [];
  for (const [tool, pkg] of Object.entries(TOOLS) as [ToolName, string][]) {
    const p = find(tool);
    checks.push({
      name: tool,
      ok: !!p,
      detail: p ?? 'not found',
      package: pkg,
      fix: p ? undefined : `apt-get install ${pkg}`,
      for: TOOL_PURPOSES[tool],
      required: needed.has(tool),
    });
  }
  const daemonFor = 'images in the daemon, and the guest stage of --init distro (the default) builds there';
  try {
    await (env.pingDocker ?? (() => new DockerClient(undefined, AbortSignal.timeout(3000)).ping()))();
    checks.push({
      name: 'docker daemon',
      ok: true,
      detail: 'answers',
      package: 'docker.io',
      for: daemonFor,
      required: true,
    });
  } catch (e) {
    checks.push({
      name: 'docker daemon',
      ok: false,
      detail: (e as Error).message,
      package: 'docker.io',
      fix: 'start it: dockerd --bridge=none &  (or systemctl start docker)',
      for: daemonFor,
      required: true,
    });
  }
  const files: [string, string, string, boolean][] = [
    [
      '/usr/lib/grub/i386-pc/boot.img',
      'grub-pc-bin',
      'GRUB for BIOS boot (--boot hybrid, the default, and bios)',
      true,
    ],
    [
      '/usr/lib/grub/x86_64-efi/linux.mod',
      'grub-efi-amd64-bin',
      'GRUB for UEFI boot (--boot hybrid, the default, and uefi)',
      true,
    ],
    ['/usr/share/OVMF/OVMF_CODE_4M.fd', 'ovmf', 'img2vm run/test of UEFI disks', false],
    ['/usr/share/AAVMF/AAVMF_CODE.fd', 'qemu-efi-aarch64', 'img2vm run/test of arm64 disks (UEFI firmware)', false],
    [
      nativeInitPath('arm64'),
      'gcc-aarch64-linux-gnu',
      "img2vm's init for arm64 guests (scripts/build-native.sh cross-builds it; libc6-dev-arm64-cross too)",
      false,
    ],
    [SYSTEMD_BOOT_EFI, 'systemd-boot-efi', '--bootloader systemd-boot with --raw images that lack it', false],
  ];
  for (const [f, pkg, purpose, required] of files) {
    const ok = exists(f);
    checks.push({
      name: f,
      ok,
      detail: ok ? 'present' : 'missing',
      package: pkg,
      fix: ok ? undefined : `apt-get install ${pkg}`,
      for: purpose,
      required,
    });
  }
  checks.push(binfmtCheck(env.binfmt ?? parseBinfmt(readBinfmtFiles()), env.hostArch ?? hostArch()));
  const root = env.isRoot ?? process.getuid?.() === 0;
  checks.push({
    name: 'root',
    ok: root,
    detail: root ? 'yes' : 'no',
    fix: root ? undefined : 'run as root (sudo) for those',
    for: 'the runc and podman builders (conversions themselves need no privileges)',
    required: false,
  });
  return checks;
}

/**
 * The other architecture's programs (arm64 on an amd64 host, amd64 on an arm64 one) run only under qemu-user-static
 * registered with binfmt_misc with the F flag (so containers find the emulator), which changes the running kernel
 * and so needs root. img2vm's own-init path runs nothing from the image and needs none of it; --init distro for such
 * an image runs its package scripts so, and so does the arm64 Debian test fixture's debootstrap second stage.
 */
function binfmtCheck(binfmt: BinfmtFacts, host: string): Check {
  const foreign: GuestArch = host === 'arm64' ? 'amd64' : 'arm64';
  const e = emulationFor(binfmt, foreign);
  return {
    name: `binfmt_misc qemu-${ARCH[foreign].uname}`,
    ok: e.ok,
    detail: e.ok ? `${e.handler.name} registered (${e.handler.interpreter}, flags ${e.handler.flags})` : e.why,
    package: 'qemu-user-static',
    fix: e.ok ? undefined : emulationFix(foreign),
    for: `--init distro for linux/${foreign} images (their template's build runs under emulation)${foreign === 'arm64' ? " and the arm64 Debian test fixture's second stage" : ''}; img2vm's own init needs none`,
    required: false,
  };
}

/** The report for people: one line per check (what provides it, what needs it), how to fix what is missing. */
export function renderChecks(checks: readonly Check[]): string {
  const out: string[] = [];
  for (const c of checks) {
    const status = c.ok ? 'ok     ' : c.required ? 'MISSING' : 'missing';
    out.push(
      `${status}  ${c.name.padEnd(36)} ${(c.package ?? '').padEnd(19)} ${c.for}${c.required ? '' : ' (optional)'}`,
    );
    if (!c.ok) out.push(`${' '.repeat(9)}→ ${c.fix ?? c.detail}`);
  }
  const pkgs = (required: boolean) => [
    ...new Set(
      checks
        .filter((c) => !c.ok && c.required === required && c.fix?.startsWith('apt-get install '))
        .map((c) => c.package!),
    ),
  ];
  const must = pkgs(true);
  const may = pkgs(false);
  if (must.length || may.length) out.push('');
  if (must.length) out.push(`the default conversion needs: apt-get install ${must.join(' ')}`);
  if (may.length) out.push(`optional: apt-get install ${may.join(' ')}`);
  return `${out.join('\n')}\n`;
}

/** Non-zero (toolMissing) when the default conversion cannot run; optional items only inform. */
export function doctorExitCode(checks: readonly Check[]): number {
  return checks.some((c) => c.required && !c.ok) ? ExitCode.toolMissing : 0;
}

export function addDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('which host tools are present, what each is needed for, and how to install the missing ones')
    .option('--json', 'print the checks as JSON')
    .action(async (opts: { json?: boolean }) => {
      const checks = await doctorChecks();
      if (opts.json) stdoutJson(checks);
      else stdout(renderChecks(checks));
      process.exitCode = doctorExitCode(checks);
    });
}
