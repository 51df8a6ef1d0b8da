// `img2vm doctor`: which host tools and services are present, and how to install what is missing.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { SYSTEMD_BOOT_EFI } from '../boot/systemd-boot.js';
import { DockerClient } from '../source/docker-api.js';
import { TOOLS, which, type ToolName } from '../tools/index.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
  /** What needs it, so a missing optional item is not alarming. */
  for: string;
}

const PURPOSE: Partial<Record<ToolName, string>> = {
  'mke2fs': 'every conversion',
  'grub-mkimage': 'every disk',
  'setfattr': 'every conversion',
  'qemu-img': 'all formats but raw',
  'mkfs.fat': '--boot uefi/hybrid',
  'mcopy': '--boot uefi/hybrid',
  'mmd': '--boot uefi/hybrid',
  'qemu-system-x86_64': 'img2vm run / test',
  'docker': 'building test images by hand',
  'debootstrap': 'the demo image and tests',
  'xz': '--format rootfs with an xz/lzma-compressed kernel',
  'zstd': '--format rootfs with a zstd-compressed kernel',
  'bzip2': '--format rootfs with a bzip2-compressed kernel',
  'lzop': '--format rootfs with an lzo-compressed kernel',
};

export async function doctorChecks(): Promise<Check[]> {
  const checks: Check[] = [];
  for (const [tool, pkg] of Object.entries(TOOLS) as [ToolName, string][]) {
    const p = which(tool);
    checks.push({ name: tool, ok: !!p, detail: p ?? 'not found', fix: p ? undefined : `apt-get install ${pkg}`, for: PURPOSE[tool] ?? 'some features' });
  }
  try {
    await new DockerClient(undefined, AbortSignal.timeout(3000)).ping();
    checks.push({ name: 'docker daemon', ok: true, detail: 'answers', for: 'images in the daemon, the guest stage' });
  } catch (e) {
    checks.push({ name: 'docker daemon', ok: false, detail: (e as Error).message, fix: 'start it: dockerd --bridge=none &  (or systemctl start docker)', for: 'images in the daemon, the guest stage' });
  }
  const files: [string, string, string][] = [
    ['/usr/lib/grub/i386-pc/boot.img', 'grub-pc-bin', 'BIOS boot'],
    ['/usr/lib/grub/x86_64-efi/linux.mod', 'grub-efi-amd64-bin', 'UEFI boot'],
    ['/usr/share/OVMF/OVMF_CODE_4M.fd', 'ovmf', 'img2vm run/test --uefi'],
    [SYSTEMD_BOOT_EFI, 'systemd-boot-efi', '--bootloader systemd-boot with --raw images that lack it'],
  ];
  for (const [f, pkg, purpose] of files) {
    const ok = existsSync(f);
    checks.push({ name: f, ok, detail: ok ? 'present' : 'missing', fix: ok ? undefined : `apt-get install ${pkg}`, for: purpose });
  }
  checks.push({ name: 'root', ok: process.getuid?.() === 0, detail: process.getuid?.() === 0 ? 'yes' : 'no', fix: 'run img2vm as root (sudo)', for: 'conversions (staging needs real owners and device nodes)' });
  return checks;
}

export function addDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('which host tools are present, and how to install the missing ones')
    .option('--json', 'print the checks as JSON')
    .action(async (opts: { json?: boolean }) => {
      const checks = await doctorChecks();
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
      } else {
        for (const c of checks) {
          process.stdout.write(`${c.ok ? 'ok     ' : 'MISSING'}  ${c.name.padEnd(46)} ${c.ok ? c.detail : `${c.fix}   (needed for ${c.for})`}\n`);
        }
        const missing = checks.filter((c) => !c.ok);
        const pkgs = [...new Set(missing.map((c) => c.fix).filter((f): f is string => !!f && f.startsWith('apt-get install ')).map((f) => f.slice(16)))];
        if (pkgs.length) process.stdout.write(`\nto install everything: apt-get install ${pkgs.join(' ')}\n`);
      }
      if (checks.some((c) => !c.ok)) process.exitCode = 1;
    });
}
