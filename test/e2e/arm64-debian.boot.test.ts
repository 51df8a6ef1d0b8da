// A Debian bookworm arm64 root file system (debootstrap --arch arm64 --foreign, its second stage under
// qemu-user-static; built once and cached by fixtures/debian-arm64-rootfs.sh, which needs root) as an OCI image
// with no daemon: --init img2vm gives an arm64 disk that boots to a console login on qemu-system-aarch64, clear
// and with its root in LUKS2 (the passphrase typed by img2vm test on ttyAMA0).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arm64DebianLayout } from './arm64-fixture.js';
import { img2vm } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', IMG2VM_ACCEL: 'tcg' };
let tmp: string;
let layout: string;
const timings: string[] = [];
const secs = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

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

  it('with --luks-password: the init asks on ttyAMA0, img2vm test types it, root logs in on the dm-crypt mapping', async () => {
    const pass = 'arm64 root under LUKS2';
    const out = join(tmp, 'debian-arm64-luks.qcow2');
    const t0 = performance.now();
    const c = await img2vm(
      [`oci:${layout}`, '--init', 'img2vm', '--luks-password', pass, '--password', 'pw', '-o', out, '--json'],
      { env: NO_DAEMON },
    );
    expect(c.exitCode, c.all).toBe(0);
    timings.push(`LUKS convert: ${secs(t0)}`);
    const plan = JSON.parse(c.stdout).plan as {
      architecture: { arch: string };
      luks: { uuid: string };
      layout: { partitions: { index: number; role: string }[] };
    };
    expect(plan.architecture.arch).toBe('arm64');
    expect(c.all).not.toContain(pass);
    const hex = plan.luks.uuid.replaceAll('-', '');
    // the LUKS2 volume is the root partition (after the ESP and the clear /boot)
    const rootPart = `vda${plan.layout.partitions.find((p) => p.role === 'root')!.index}`;
    // The root's device (by its device number, as the kernel sees it), its dm name and UUID, what it sits on,
    // and that aes_ce_blk's xts(aes) is there for dm-crypt (QEMU's "max" CPU has the AES instructions).
    const probe = [
      'm=$(mountpoint -d /); cat /sys/dev/block/$m/dm/name /sys/dev/block/$m/dm/uuid; ls /sys/dev/block/$m/slaves',
      'grep -m1 -o "^driver *: xts-aes-ce" /proc/crypto',
    ].join('; ');
    const log = join(tmp, 'luks-console.log');
    const t1 = performance.now();
    const t = await img2vm(
      [
        'test',
        out,
        '--luks-password',
        pass,
        '--login',
        'root:pw',
        '--run',
        probe,
        '--timeout',
        '1200',
        '--log',
        log,
        '--json',
      ],
      { env: NO_DAEMON },
    );
    expect(t.exitCode, t.all).toBe(0);
    const consoleLog = await readFile(log, 'utf8');
    expect(consoleLog).toContain(`Please unlock disk root (LUKS2 UUID=${plan.luks.uuid}): `);
    const unlocked = /LUKS2 volume \S+ unlocked with keyslot 0 in ([\d.]+) s/.exec(consoleLog);
    expect(unlocked, consoleLog).not.toBeNull();
    expect(t.all + consoleLog).not.toContain(pass);
    const r = JSON.parse(t.stdout) as { timings: { login: number }; command: { output: string } };
    expect(r.command.output).toBe(
      `img2vm-root\nCRYPT-LUKS2-${hex}-img2vm-root\n${rootPart}\ndriver       : xts-aes-ce`,
    );
    timings.push(
      `LUKS boot to login (TCG): ${r.timings.login} s; unlock in the guest: ${unlocked![1]} s; test to the command's end: ${secs(t1)}`,
    );
  });
});
