// img2vm doctor: what each tool is for and which package provides it; non-zero only when the default conversion cannot run.
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  defaultConversionTools,
  doctorChecks,
  doctorExitCode,
  renderChecks,
  type DoctorEnv,
} from '../../src/cli/doctor.js';
import { parseBinfmt } from '../../src/guest/binfmt.js';
import { TOOL_PURPOSES, TOOLS, which } from '../../src/tools/index.js';

const AARCH64 = (flags: string) =>
  `enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: ${flags}\noffset 0\n` +
  'magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n';
const binfmtWith = (flags: string) => parseBinfmt({ status: 'enabled\n', entries: { 'qemu-aarch64': AARCH64(flags) } });
const healthy: DoctorEnv = {
  pingDocker: async () => undefined,
  exists: () => true,
  isRoot: true,
  binfmt: binfmtWith('POF'),
  hostArch: 'amd64',
};

let bin: string;
let oldPath: string | undefined;
beforeEach(async () => {
  bin = await mkdtemp(join(tmpdir(), 'img2vm-doctor-'));
  oldPath = process.env.PATH;
});
afterEach(async () => {
  process.env.PATH = oldPath;
  await rm(bin, { recursive: true, force: true });
});

/** A PATH with only these host tools on it (the sbin directories are always searched too). */
async function pathWith(tools: string[]): Promise<void> {
  for (const t of tools) {
    const p = which(t);
    if (!p) throw new Error(`this host lacks ${t}; run scripts/install-deps.sh`);
    await symlink(p, join(bin, t));
  }
  process.env.PATH = bin;
}

describe('img2vm doctor', () => {
  it('the default conversion needs these tools', () => {
    // img2vm writes the partitions, ext4, FAT and qcow2 itself: GRUB's images are all it asks a tool for
    expect([...defaultConversionTools()].sort()).toEqual(['grub-mkimage']);
  });

  it('every tool has its package and what it is needed for', async () => {
    const checks = await doctorChecks(healthy);
    for (const [tool, pkg] of Object.entries(TOOLS)) {
      expect(checks.find((c) => c.name === tool)).toMatchObject({
        package: pkg,
        for: TOOL_PURPOSES[tool as keyof typeof TOOLS],
      });
      expect(TOOL_PURPOSES[tool as keyof typeof TOOLS].length).toBeGreaterThan(10);
    }
  });

  it('a tool the default conversion needs missing from PATH: named with its package and purpose, exit 5', async () => {
    // Everything but grub-mkimage, the one tool the default conversion runs.
    await pathWith(['mcopy', 'mmd', 'setfattr', 'qemu-img']);
    const checks = await doctorChecks(healthy);
    expect(checks.find((c) => c.name === 'grub-mkimage')).toMatchObject({
      ok: false,
      required: true,
      package: 'grub-common',
      fix: 'apt-get install grub-common',
    });
    expect(doctorExitCode(checks)).toBe(5);
    const text = renderChecks(checks);
    expect(text).toMatch(
      /^MISSING {2}grub-mkimage +grub-common +GRUB for BIOS and UEFI boot \(--boot hybrid, the default, needs both\)$/m,
    );
    expect(text).toMatch(/^ {9}→ apt-get install grub-common$/m);
    expect(text).toContain('the default conversion needs: apt-get install grub-common\n');
  });

  it('only optional tools missing: reported, exit 0', async () => {
    await pathWith(['grub-mkimage']);
    const checks = await doctorChecks(healthy);
    expect(checks.find((c) => c.name === 'qemu-system-x86_64')).toMatchObject({
      ok: false,
      required: false,
      package: 'qemu-system-x86',
    });
    expect(doctorExitCode(checks)).toBe(0);
    const text = renderChecks(checks);
    expect(text).toMatch(/^missing {2}qemu-system-x86_64 +qemu-system-x86 +img2vm run and img2vm test \(optional\)$/m);
    expect(text).not.toContain('the default conversion needs');
    expect(text).toMatch(/^optional: apt-get install .*qemu-system-x86/m);
  });

  it('no daemon or no GRUB modules also fail the default conversion; no OVMF does not', async () => {
    const noDaemon = await doctorChecks({
      ...healthy,
      which: () => '/usr/bin/x',
      pingDocker: async () => Promise.reject(new Error('connect ENOENT /var/run/docker.sock')),
    });
    expect(noDaemon.find((c) => c.name === 'docker daemon')).toMatchObject({
      ok: false,
      required: true,
      detail: 'connect ENOENT /var/run/docker.sock',
    });
    expect(doctorExitCode(noDaemon)).toBe(5);
    const noOvmf = await doctorChecks({ ...healthy, which: () => '/usr/bin/x', exists: (p) => !p.includes('OVMF') });
    expect(doctorExitCode(noOvmf)).toBe(0);
    const noGrub = await doctorChecks({ ...healthy, which: () => '/usr/bin/x', exists: (p) => !p.includes('i386-pc') });
    expect(noGrub.find((c) => c.name.includes('i386-pc'))).toMatchObject({ ok: false, package: 'grub-pc-bin' });
    expect(doctorExitCode(noGrub)).toBe(5);
  });

  it('arm64: the firmware, the cross-built init, and what needs root to run arm64 programs (optional all)', async () => {
    const registered = await doctorChecks(healthy);
    expect(registered.find((c) => c.name === 'binfmt_misc qemu-aarch64')).toMatchObject({
      ok: true,
      detail: 'qemu-aarch64 registered (/usr/libexec/qemu-binfmt/aarch64-binfmt-P, flags POF)',
      for: expect.stringMatching(/^--init distro for linux\/arm64 images/),
    });
    const checks = await doctorChecks({ ...healthy, binfmt: parseBinfmt({ entries: {} }) });
    expect(checks.find((c) => c.name === 'binfmt_misc qemu-aarch64')).toMatchObject({
      ok: false,
      required: false,
      package: 'qemu-user-static',
      detail: 'binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc',
      fix: expect.stringMatching(/^as root .*scripts\/register-binfmt\.sh or update-binfmts --enable qemu-aarch64$/),
    });
    // Registered without F: a container's root has no emulator at the registered path, so it does not count.
    const noF = await doctorChecks({ ...healthy, binfmt: binfmtWith('P') });
    expect(noF.find((c) => c.name === 'binfmt_misc qemu-aarch64')).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/without the F \(fix-binary\) flag/),
    });
    // On an arm64 host the foreign architecture is amd64.
    const arm64Host = await doctorChecks({ ...healthy, hostArch: 'arm64' });
    expect(arm64Host.find((c) => c.name === 'binfmt_misc qemu-x86_64')).toMatchObject({
      ok: false,
      fix: expect.stringMatching(/update-binfmts --enable qemu-x86_64$/),
    });
    expect(checks.find((c) => c.name === '/usr/share/AAVMF/AAVMF_CODE.fd')).toMatchObject({
      package: 'qemu-efi-aarch64',
      required: false,
    });
    expect(checks.find((c) => c.name.endsWith('native/init-arm64'))).toMatchObject({ required: false });
    expect(doctorExitCode(checks)).toBe(0);
  });
});
