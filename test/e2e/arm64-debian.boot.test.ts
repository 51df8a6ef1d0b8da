// A Debian bookworm arm64 root file system (debootstrap --arch arm64 --foreign, its second stage under
// qemu-user-static; built once and cached by fixtures/debian-arm64-rootfs.sh, which needs root) as an OCI image
// with no daemon: --init img2vm gives an arm64 disk that boots to a console login on qemu-system-aarch64.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arm64DebianLayout } from './arm64-fixture.js';
import { img2vm } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', IMG2VM_ACCEL: 'tcg' };
let tmp: string;
let layout: string;
const timings: string[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-arm64-debian-'));
  layout = await arm64DebianLayout(timings);
}, 60 * 60_000);

afterAll(async () => {
  if (timings.length) console.log(`arm64 Debian:\n${timings.join('\n')}`);
  await rm(tmp, { recursive: true, force: true });
  if (layout) await rm(layout, { recursive: true, force: true });
});

describe('Debian bookworm arm64, --init img2vm', () => {
  it('boots to a console login on aarch64; root logs in and runs a command', async () => {
    const out = join(tmp, 'debian-arm64.qcow2');
    const t0 = performance.now();
    const c = await img2vm([`oci:${layout}`, '--init', 'img2vm', '--password', 'pw', '-o', out, '--json'], {
      env: NO_DAEMON,
    });
    expect(c.exitCode, c.all).toBe(0);
    timings.push(`convert: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const plan = JSON.parse(c.stdout).plan as { architecture: { arch: string }; guest: { init: { mode: string } } };
    expect(plan.architecture.arch).toBe('arm64');
    expect(plan.guest.init).toMatchObject({ mode: 'console', login: true });
    const t1 = performance.now();
    const t = await img2vm(
      ['test', out, '--login', 'root:pw', '--run', 'uname -m; cat /etc/debian_version', '--timeout', '1200', '--json'],
      { env: NO_DAEMON },
    );
    expect(t.exitCode, t.all).toBe(0);
    expect(JSON.parse(t.stdout).command.output).toMatch(/^aarch64\n12\./);
    timings.push(`boot, login, command (TCG): ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  });
});
