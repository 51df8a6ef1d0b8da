// Slow tier (IMG2VM_SLOW=1, `bash scripts/test.sh --slow`): the cached Debian bookworm arm64 root file system
// converted with --init distro on this amd64 host, so the template's build runs arm64 apt, dpkg and
// update-initramfs under qemu-aarch64 through binfmt_misc (many minutes under emulation), then boots to a console
// login on qemu-system-aarch64 (TCG) with Debian's own arm64 cloud kernel, GRUB arm64-efi and systemd.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arm64DebianLayout } from './arm64-fixture.js';
import { img2vm } from './helpers.js';

// The daemonless runc builder: nothing here needs dockerd, as the "no daemon" asks.
const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', IMG2VM_ACCEL: 'tcg' };
let tmp: string;
let layout: string;
const timings: string[] = [];

const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-arm64-distro-'));
  layout = await arm64DebianLayout(timings);
}, 60 * 60_000);

afterAll(async () => {
  if (timings.length) console.log(`arm64 Debian, --init distro:\n${timings.join('\n')}`);
  await rm(tmp, { recursive: true, force: true });
  if (layout) await rm(layout, { recursive: true, force: true });
});

interface PlanOut {
  architecture: { arch: string };
  guest: { strategy: string; build: { platform: string; emulator: { name: string } | null } };
  kernel: { version: string };
  boot: { loaders: string[]; cmdline: string };
  layout: { table: string };
}

describe('Debian bookworm arm64, --init distro (emulated build)', () => {
  it("installs Debian's arm64 cloud kernel under qemu-user and boots to a console login on aarch64", async () => {
    const out = join(tmp, 'debian-arm64-distro.qcow2');
    const t0 = performance.now();
    const c = await img2vm(
      [
        `oci:${layout}`,
        '--init',
        'distro',
        '--platform',
        'linux/arm64',
        '--builder',
        'runc',
        '--password',
        'pw',
        '-o',
        out,
        '--json',
      ],
      { env: NO_DAEMON, timeout: 120 * 60_000 },
    );
    expect(c.exitCode, c.all).toBe(0);
    timings.push(`convert (the emulated build, unless cached): ${seconds(t0)}`);
    const plan = JSON.parse(c.stdout).plan as PlanOut;
    expect(plan.architecture.arch).toBe('arm64');
    expect(plan.guest.strategy).toBe('distro');
    expect(plan.guest.build.platform).toBe('linux/arm64');
    expect(plan.guest.build.emulator).not.toBeNull();
    expect(plan.kernel.version).toMatch(/-cloud-arm64$/);
    expect(plan.boot.loaders).toEqual(['grub-efi']);
    expect(plan.boot.cmdline).toContain('console=ttyAMA0');
    expect(plan.layout.table).toBe('gpt');
    const t1 = performance.now();
    const t = await img2vm(
      [
        'test',
        out,
        '--login',
        'root:pw',
        '--run',
        'uname -m; uname -r; cat /etc/debian_version; readlink /sbin/init',
        '--timeout',
        '1800',
        '--json',
      ],
      { env: NO_DAEMON, timeout: 40 * 60_000 },
    );
    expect(t.exitCode, t.all).toBe(0);
    timings.push(`boot, login, command (TCG): ${seconds(t1)}`);
    const lines = (JSON.parse(t.stdout) as { command: { output: string } }).command.output.split('\n');
    expect(lines[0]).toBe('aarch64');
    expect(lines[1]).toBe(plan.kernel.version);
    expect(lines[2]).toMatch(/^12\./);
    expect(lines[3]).toMatch(/systemd$/);
  });
});
