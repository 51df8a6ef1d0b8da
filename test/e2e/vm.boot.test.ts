// Boot tests of `img2vm test` / `run` under QEMU TCG on a Debian disk: pass, fail fast, --expect, login, signals.
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scope } from '../../src/core/scope.js';
import { testDisk, VmTestError, type TestOptions } from '../../src/vm/test.js';
import { BIN, debianFixture, dockerBuild, img2vm, sh } from './helpers.js';

const BASE = 'img2vm-e2e:bookworm';
const WORK = '/tmp/img2vm-e2e-vm';
const GOOD = join(WORK, 'good.raw');
/** The case of issue 16: an image with an enabled unit that fails at every boot. */
const FAILING_UNIT = 'img2vm-e2e-failing:bookworm';
const DEGRADED = join(WORK, 'degraded.raw');
const BROKEN = join(WORK, 'broken.raw');
const PART_OFFSET_MIB = 1;

async function test(o: Omit<TestOptions, 'disk'> & { disk?: string }) {
  const scope = new Scope();
  try {
    return await testDisk({ disk: GOOD, timeoutMs: 180_000, ...o }, { scope });
  } finally {
    await scope.close();
  }
}

async function failure(o: Omit<TestOptions, 'disk'> & { disk?: string }): Promise<VmTestError> {
  try {
    await test(o);
  } catch (e) {
    if (e instanceof VmTestError) return e;
    throw e;
  }
  throw new Error('the test passed but should have failed');
}

/** QEMU processes started on our work disks (by command line): none may outlive a test. */
async function qemuPids(): Promise<string[]> {
  const r = await execa('pgrep', ['-f', `qemu-system-x86_64 .*${WORK}/`], { reject: false });
  return r.stdout.split('\n').filter(Boolean);
}

describe('img2vm test / run on a Debian disk (TCG)', () => {
  beforeAll(async () => {
    await rm(WORK, { recursive: true, force: true });
    await mkdir(WORK, { recursive: true });
    await debianFixture(BASE);
    // A disk made by img2vm itself: raw, MBR, BIOS GRUB, root password "pw", the readiness marker unit.
    const r = await img2vm([BASE, '-o', GOOD, '--boot', 'bios', '--password', 'pw', '--hostname', 'localhost']);
    if (r.exitCode !== 0) throw new Error(`conversion failed:\n${r.all}`);
    // Wipe the root file system's superblock: GRUB can no longer find its root.
    await copyFile(GOOD, BROKEN);
    await sh('dd', ['if=/dev/zero', `of=${BROKEN}`, 'bs=1024', `seek=${PART_OFFSET_MIB * 1024 + 1}`, 'count=1024', 'conv=notrunc', 'status=none']);
  });

  afterAll(async () => {
    expect(await qemuPids()).toEqual([]);
    await rm(WORK, { recursive: true, force: true });
  });

  it('passes on a good disk at the readiness marker carrying the boot nonce, with boot timings and a console log', async () => {
    const log = join(WORK, 'good.log');
    const bootNonce = randomBytes(16).toString('hex');
    const r = await test({ logFile: log, bootNonce });
    expect(r).toMatchObject({ passed: true, matched: 'marker', format: 'raw', firmware: 'bios', kernelRelease: expect.stringMatching(/^6\./) });
    const t = r.timings;
    expect(t.firmware).toBeLessThan(t.kernel!);
    expect(t.kernel).toBeLessThan(t.init!);
    expect(t.init).toBeLessThan(t.ready!);
    expect(t.ready).toBe(t.marker);
    console.log(`boot timings (s): ${JSON.stringify(t)} accel=${r.accel}`);
    const text = await readFile(log, 'utf8');
    expect(text).toContain('Linux version');
    // The guest read the nonce from the SMBIOS OEM string: its check announced itself, then gave the verdict.
    const checking = text.indexOf(`img2vm-checking: nonce=${bootNonce}\n`);
    expect(checking).toBeGreaterThan(-1);
    expect(text.slice(checking)).toMatch(new RegExp(`^img2vm-ready: nonce=${bootNonce} kernel=6\\.`, 'm'));
    expect(text).not.toContain('\x1b');
  });

  it('fails fast on a disk whose root file system was wiped, with the reason', async () => {
    const t0 = Date.now();
    const e = await failure({ disk: BROKEN, timeoutMs: 240_000 });
    expect(e.exitCode).toBe(21);
    // core.img has `normal` built in, so GRUB stops at its command line rather than in rescue mode
    expect(e.message).toMatch(/^boot failed: GRUB (entered rescue mode|stopped at its command line \(no usable grub.cfg\?\)) \(error: no such device: [0-9a-f-]+\.\)$/);
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(e.report.lastLines?.at(-1)).toMatch(/grub( rescue)?>/);
  });

  it('--expect passes on a custom pattern', async () => {
    const r = await test({ expect: /Reached target .*multi-user\.target/ });
    expect(r).toMatchObject({ passed: true, matched: 'expect', matchedLine: expect.stringContaining('multi-user.target') });
  });

  it('--expect that never matches fails by timeout (exit 20)', async () => {
    const e = await failure({ expect: /this never appears/, timeoutMs: 8_000 });
    expect(e.exitCode).toBe(20);
    expect(e.message).toMatch(/^no console line matched \/this never appears\/ within 8 s; last console line: /);
  });

  it('--login root:pw --run "uname -r" passes and returns the output', async () => {
    const r = await test({ login: { user: 'root', password: 'pw' }, command: 'uname -r' });
    expect(r.command).toEqual({ command: 'uname -r', exitCode: 0, output: r.kernelRelease });
    expect(r.login).toEqual({ user: 'root', ok: true });
  });

  it('--run false fails with exit code 24', async () => {
    const e = await failure({ login: { user: 'root', password: 'pw' }, command: 'echo out; false' });
    expect(e.exitCode).toBe(24);
    expect(e.message).toBe('the command exited with status 1: echo out; false');
    expect(e.report.command).toMatchObject({ exitCode: 1, output: 'out' });
  });

  it('fails on a system that came up degraded, naming the failed unit (exit 21)', async () => {
    // Enabled as `systemctl enable` would (the fixture has no systemd yet: the distro template installs it).
    await dockerBuild(FAILING_UNIT, [
      `FROM ${BASE}`,
      'RUN mkdir -p /etc/systemd/system/multi-user.target.wants'
        + " && printf '[Unit]\\nDescription=fails at every boot\\n[Service]\\nExecStart=/bin/false\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/img2vm-e2e-false.service"
        + ' && ln -s ../img2vm-e2e-false.service /etc/systemd/system/multi-user.target.wants/',
    ].join('\n'));
    const c = await img2vm([FAILING_UNIT, '-o', DEGRADED, '--init', 'distro', '--boot', 'bios']);
    expect(c.exitCode, c.all).toBe(0);
    const r = await img2vm(['test', DEGRADED, '--timeout', '300', '--json']);
    expect(r.exitCode, r.stdout).toBe(21);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ passed: false, error: { kind: 'kernelPanic', exitCode: 21 } });
    expect(report.reason).toMatch(/^boot failed: the guest came up degraded: failed units: img2vm-e2e-false\.service$/);
    console.log(`degraded disk: verdict after ${report.timings.total} s (${JSON.stringify(report.timings)})`);
  });

  describe('through the CLI in a child process', () => {
    it('SIGINT stops QEMU, leaves no process behind and exits 130', async () => {
      const p = execa(BIN, ['test', GOOD, '--timeout', '120'], { reject: false, all: true });
      await new Promise((r) => setTimeout(r, 5000));
      expect((await qemuPids()).length).toBe(1);
      p.kill('SIGINT');
      const r = await p;
      expect(r.exitCode).toBe(130);
      expect(r.all).toContain('img2vm: error: interrupted by SIGINT');
      expect(await qemuPids()).toEqual([]);
    });

    it('run: the console goes to stdout, --publish listens on 127.0.0.1 only, --timeout stops QEMU (exit 20)', async () => {
      const p = execa(BIN, ['run', GOOD, '--timeout', '15', '--publish', '47022:22'], { reject: false, stdin: 'ignore' });
      await new Promise((r) => setTimeout(r, 5000));
      const ss = await execa('ss', ['-Hltn', 'sport = :47022'], { reject: false });
      const r = await p;
      expect(r.exitCode).toBe(20);
      expect(r.stderr).toContain('stopped QEMU after --timeout 15 s');
      expect(r.stdout).toContain('Linux version');
      if (ss.exitCode === 0) expect(ss.stdout.trim().split(/\s+/)[3]).toBe('127.0.0.1:47022');
      expect(await qemuPids()).toEqual([]);
    });
  });
});
