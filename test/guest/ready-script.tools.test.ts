// The guest's readiness check (templates/*/files/usr/local/sbin/img2vm-ready) run on the host against fake
// firmware tables and fake systemctl/rc-status, its lines read back by the console watcher `img2vm test` uses.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TEMPLATES_DIR } from '../../src/core/paths.js';
import { ConsoleWatcher } from '../../src/vm/console.js';

const SCRIPT = join(TEMPLATES_DIR, 'debian', 'files', 'usr', 'local', 'sbin', 'img2vm-ready');
const NONCE = '9f'.repeat(16);
const work = mkdtempSync(join(tmpdir(), 'img2vm-ready-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
/** Alpine's /bin/sh. */
const BUSYBOX = ['busybox', 'sh'];

/** An SMBIOS type 11 structure as the kernel shows it: a 5-byte header, NUL-ended strings, a final NUL. */
function oemStrings(...strings: string[]): Buffer {
  return Buffer.concat([
    Buffer.from([11, 5, 0x0b, 0x00, strings.length]),
    ...strings.map((s) => Buffer.from(`${s}\0`)),
    Buffer.from([0]),
  ]);
}

interface Guest {
  /** SMBIOS type 11 entries (raw bytes), by entry name. */
  dmi?: Record<string, Buffer>;
  cmdline?: string;
  /** Shell bodies of fake commands. */
  bin?: Record<string, string>;
}

/** Runs the script with its argument in a fake guest; returns its stdout. */
function run(arg: string, g: Guest, shell = ['/bin/sh']): string {
  const root = join(work, String(n++));
  const bin = join(root, 'bin');
  mkdirSync(bin, { recursive: true });
  for (const [name, raw] of Object.entries(g.dmi ?? {})) {
    mkdirSync(join(root, 'sys/firmware/dmi/entries', name), { recursive: true });
    writeFileSync(join(root, 'sys/firmware/dmi/entries', name, 'raw'), raw);
  }
  writeFileSync(join(root, 'cmdline'), g.cmdline ?? 'BOOT_IMAGE=/vmlinuz root=UUID=1 ro console=ttyS0\n');
  // Never the host's own: no module is loaded and the kernel release is fixed.
  const fakes = { modprobe: 'exit 1', uname: 'echo 6.1.0-28-cloud-amd64', ...g.bin };
  for (const [name, body] of Object.entries(fakes)) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  return execFileSync(shell[0]!, [...shell.slice(1), SCRIPT, arg], {
    env: { PATH: `${bin}:/usr/bin:/bin`, IMG2VM_SYSFS: join(root, 'sys'), IMG2VM_CMDLINE: join(root, 'cmdline') },
    encoding: 'utf8',
  });
}

const systemctl = (state: string, failed = '', jobs = '') => ({
  systemctl: [
    'case "$*" in',
    `"is-system-running --wait") echo ${state} ;;`,
    `"--failed --plain --no-legend") printf '${failed}' ;;`,
    `"list-jobs --plain --no-legend") printf '${jobs}' ;;`,
    'esac',
  ].join('\n'),
});

describe('img2vm-ready: the nonce', () => {
  it('comes from the SMBIOS OEM string img2vm test passes, whichever entry holds it', () => {
    const dmi = { '11-0': oemStrings('vendor thing'), '11-1': oemStrings('other', `img2vm.nonce=${NONCE}`) };
    expect(run('announce', { dmi })).toBe(`img2vm-checking: nonce=${NONCE}\n`);
    expect(run('announce', { dmi: { '11-0': oemStrings(`img2vm.nonce=${NONCE}`) } })).toBe(
      `img2vm-checking: nonce=${NONCE}\n`,
    );
  });

  it('else from img2vm.nonce= on the kernel command line (a direct-kernel boot has no SMBIOS)', () => {
    expect(run('announce', { cmdline: `console=ttyS0  img2vm.nonce=${NONCE}\n` })).toBe(
      `img2vm-checking: nonce=${NONCE}\n`,
    );
  });

  it('is "none" without one, or when it is not 16 to 64 lowercase hex digits', () => {
    expect(run('announce', {})).toBe('img2vm-checking: nonce=none\n');
    for (const bad of ['abc', 'ABCDEF0123456789', `${NONCE};reboot`, 'x'.repeat(20), 'a'.repeat(65)]) {
      expect(
        run('announce', { dmi: { '11-0': oemStrings(`img2vm.nonce=${bad}`) }, cmdline: `img2vm.nonce=${bad}` }),
        bad,
      ).toBe('img2vm-checking: nonce=none\n');
    }
  });
});

describe('img2vm-ready: the verdict, as img2vm test reads it', () => {
  const dmi = { '11-0': oemStrings(`img2vm.nonce=${NONCE}`) };
  const verdict = (out: string) => {
    const w = new ConsoleWatcher({ nonce: NONCE });
    w.feed(`[    0.0] Linux version 6.1.0-28-cloud-amd64 (x)\r\n${out.replaceAll('\n', '\r\n')}`, 1);
    return w.verdict;
  };

  it('systemd, running with no failed unit: the ready marker', () => {
    const out = run('systemd', { dmi, bin: systemctl('running') });
    expect(out).toBe(`img2vm-ready: nonce=${NONCE} kernel=6.1.0-28-cloud-amd64\n`);
    expect(verdict(out)).toMatchObject({ status: 'ready', matched: 'marker' });
  });

  it('systemd, degraded: the failed units, whatever the listing puts before them', () => {
    const failed =
      'img2vm-e2e-false.service loaded failed failed fails at every boot\\n\\xe2\\x97\\x8f other.mount loaded failed failed Other\\n';
    const out = run('systemd', { dmi, bin: systemctl('degraded', failed) });
    expect(out).toBe(
      `img2vm-degraded: nonce=${NONCE} kernel=6.1.0-28-cloud-amd64 state=degraded failed=img2vm-e2e-false.service,other.mount waiting=\n`,
    );
    expect(verdict(out)).toMatchObject({
      status: 'failed',
      reason: 'the guest came up degraded: failed units: img2vm-e2e-false.service, other.mount',
    });
  });

  it('systemd still starting when the wait ran out: the jobs it waits for', () => {
    const bin = {
      ...systemctl('', '', '12 slow.service start running\\n13 multi-user.target start waiting\\n'),
      timeout: 'exit 124',
    };
    const out = run('systemd', { dmi, bin });
    expect(out).toBe(
      `img2vm-degraded: nonce=${NONCE} kernel=6.1.0-28-cloud-amd64 state=starting failed= waiting=slow.service,multi-user.target\n`,
    );
    expect(verdict(out)).toMatchObject({
      status: 'failed',
      reason:
        'the guest was still starting when its readiness check gave up: waiting for slow.service, multi-user.target',
    });
  });

  it('systemd before 240, which refuses --wait for is-system-running: asks until the system has settled', () => {
    const state = join(work, 'polls');
    writeFileSync(state, '');
    const fake = [
      'case "$*" in',
      '*--wait*) echo "--wait may only be used with start" >&2; exit 1 ;;',
      // starting on the first question, degraded from the second on
      `"is-system-running") if [ -s ${state} ]; then echo degraded; else echo x > ${state}; echo starting; fi ;;`,
      `"--failed --plain --no-legend") echo "a.service loaded failed failed A" ;;`,
      'esac',
    ].join('\n');
    expect(run('systemd', { dmi, bin: { systemctl: fake } })).toBe(
      `img2vm-degraded: nonce=${NONCE} kernel=6.1.0-28-cloud-amd64 state=degraded failed=a.service waiting=\n`,
    );
  });

  it('OpenRC: crashed and failed services of every runlevel, each once', () => {
    const rc = [
      'case "$*" in',
      '"--crashed") echo sshd ;;',
      `"--all --format ini") printf '[default]\\nsshd =  crashed \\nbad-one = failed\\nimg2vm-dhcp =  started 00:00:03 (0)\\n[boot]\\nhwclock =  stopped \\n' ;;`,
      'esac',
    ].join('\n');
    // busybox runs its own applets first (uname too: the host's release).
    const out = run('openrc', { dmi, bin: { 'rc-status': rc } }, BUSYBOX);
    expect(out).toMatch(
      new RegExp(`^img2vm-degraded: nonce=${NONCE} kernel=\\S+ state=degraded failed=bad-one,sshd waiting=\n$`),
    );
    expect(run('openrc', { dmi, bin: { 'rc-status': 'exit 1' } }, BUSYBOX)).toMatch(
      new RegExp(`^img2vm-ready: nonce=${NONCE} kernel=\\S+\n$`),
    );
  });

  it('without the nonce, its lines say so, and img2vm test fails saying why rather than passing', () => {
    const out = run('systemd', { bin: systemctl('running') });
    expect(out).toBe('img2vm-ready: nonce=none kernel=6.1.0-28-cloud-amd64\n');
    expect(verdict(out)).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining("the guest's readiness check found no nonce"),
    });
  });
});
