// Boot tests of `img2vm test` / `run` under QEMU TCG on a Debian disk: pass, fail fast, --expect, login, signals.
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { copyFile, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scope } from '../../src/core/scope.js';
import { testDisk, VmTestError, type TestOptions } from '../../src/vm/test.js';
import { BIN, debianFixture, dockerBuild, img2vm, sh } from './helpers.js';

const BASE = 'img2vm-e2e:bookworm';
// Its own directory: a fixed path would be emptied under another run of this file, and qemuPids would count its QEMUs.
const WORK = mkdtempSync(join(tmpdir(), 'img2vm-e2e-vm-'));
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

/**
 * Resolves with a child's output once it matches; fails, quoting the output, when the stream ends first or after
 * `seconds` (a wait on the event, never a sleep that guesses how long it takes).
 */
function outputMatching(stream: Readable | null, re: RegExp, o: { seconds: number; what: string }): Promise<string> {
  if (!stream) throw new Error(`${o.what}: the stream is not piped`);
  let text = '';
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (re.test(text)) done();
    };
    const onEnd = () => done(new Error(`${o.what}: the output ended first; it was:\n${text.slice(-3000)}`));
    const timer = setTimeout(
      () => done(new Error(`${o.what}: not there after ${o.seconds} s; the output so far:\n${text.slice(-3000)}`)),
      o.seconds * 1000,
    );
    stream.on('data', onData);
    stream.on('end', onEnd);
  });
}

/** Checks every 100 ms until `found` gives a value; fails loudly after `seconds`, or as soon as `ended` settles. */
async function until<T>(
  found: () => T | undefined,
  o: { seconds: number; what: string; ended?: Promise<unknown> },
): Promise<T> {
  let over = false;
  void o.ended?.then(
    () => (over = true),
    () => (over = true),
  );
  const deadline = performance.now() + o.seconds * 1000;
  for (;;) {
    const v = found();
    if (v !== undefined) return v;
    if (over) throw new Error(`${o.what}: the process ended first`);
    if (performance.now() > deadline) throw new Error(`${o.what}: not there after ${o.seconds} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A TCP port nothing listens on now (the kernel's pick), for --publish. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The local addresses that listen on a TCP port, from the kernel's socket tables (no ss needed, nothing to skip). */
function tcpListeners(port: number): string[] {
  const out: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (!local || state !== '0A') continue; // 0A: LISTEN
      const [addr, hexPort] = local.split(':') as [string, string];
      if (Number.parseInt(hexPort, 16) !== port) continue;
      // IPv4 is one 32-bit word in host (little-endian) order; IPv6 is shown as the kernel's hex, bracketed.
      out.push(
        addr.length === 8 ? `${[...Buffer.from(addr, 'hex').reverse()].join('.')}:${port}` : `[${addr}]:${port}`,
      );
    }
  }
  return out;
}

describe('img2vm test / run on a Debian disk (TCG)', () => {
  beforeAll(async () => {
    await debianFixture(BASE);
    // A disk made by img2vm itself: raw, MBR, BIOS GRUB, root password "pw", the readiness marker unit.
    const r = await img2vm([BASE, '-o', GOOD, '--boot', 'bios', '--password', 'pw', '--hostname', 'localhost']);
    if (r.exitCode !== 0) throw new Error(`conversion failed:\n${r.all}`);
    // Wipe the root file system's superblock: GRUB can no longer find its root.
    await copyFile(GOOD, BROKEN);
    await sh('dd', [
      'if=/dev/zero',
      `of=${BROKEN}`,
      'bs=1024',
      `seek=${PART_OFFSET_MIB * 1024 + 1}`,
      'count=1024',
      'conv=notrunc',
      'status=none',
    ]);
  });

  afterAll(async () => {
    expect(await qemuPids()).toEqual([]);
    await rm(WORK, { recursive: true, force: true });
  });

  it('passes on a good disk at the readiness marker carrying the boot nonce, with boot timings and a console log', async () => {
    const log = join(WORK, 'good.log');
    const bootNonce = randomBytes(16).toString('hex');
    const r = await test({ logFile: log, bootNonce });
    expect(r).toMatchObject({
      passed: true,
      matched: 'marker',
      format: 'raw',
      firmware: 'bios',
      kernelRelease: expect.stringMatching(/^6\./),
    });
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
    // Anywhere in a line, as img2vm's watcher reads it: getty's "login: " prompt can come first on the same line.
    expect(text.slice(checking)).toMatch(new RegExp(`\\bimg2vm-ready: nonce=${bootNonce} kernel=6\\.`));
    expect(text).not.toContain('\x1b');
  });

  it('fails fast on a disk whose root file system was wiped, with the reason', async () => {
    // Fast means at GRUB's prompt, not at the timeout: exit 21 (boot failed) is given only when a failure was recognised
    // on the console, a timeout is exit 20.
    const e = await failure({ disk: BROKEN, timeoutMs: 240_000 });
    expect(e.exitCode).toBe(21);
    // core.img has `normal` built in, so GRUB stops at its command line rather than in rescue mode
    expect(e.message).toMatch(
      /^boot failed: GRUB (entered rescue mode|stopped at its command line \(no usable grub.cfg\?\)) \(error: no such device: [0-9a-f-]+\.\)$/,
    );
    expect(e.report.lastLines?.at(-1)).toMatch(/grub( rescue)?>/);
  });

  it('--expect passes on a custom pattern', async () => {
    const r = await test({ expect: /Reached target .*multi-user\.target/ });
    expect(r).toMatchObject({
      passed: true,
      matched: 'expect',
      matchedLine: expect.stringContaining('multi-user.target'),
    });
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
    await dockerBuild(
      FAILING_UNIT,
      [
        `FROM ${BASE}`,
        'RUN mkdir -p /etc/systemd/system/multi-user.target.wants' +
          " && printf '[Unit]\\nDescription=fails at every boot\\n[Service]\\nExecStart=/bin/false\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/img2vm-e2e-false.service" +
          ' && ln -s ../img2vm-e2e-false.service /etc/systemd/system/multi-user.target.wants/',
      ].join('\n'),
    );
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
      // QEMU is running once the firmware has printed on the console (img2vm reports that milestone).
      await outputMatching(p.stderr, /^img2vm: firmware at /m, {
        seconds: 120,
        what: 'the firmware milestone of img2vm test',
      });
      expect((await qemuPids()).length).toBe(1);
      p.kill('SIGINT');
      const r = await p;
      expect(r.exitCode).toBe(130);
      expect(r.all).toContain('img2vm: error: interrupted by SIGINT');
      expect(await qemuPids()).toEqual([]);
    });

    it('run: the console goes to stdout, --publish listens on 127.0.0.1 only, --timeout stops QEMU (exit 20)', async () => {
      // Run holds a piped console back until the end (it cannot know yet whether the disk runs a workload), so its stdout
      // is read once QEMU stopped. The kernel printed 10 to 18 s after QEMU started on this busy 2-core TCG host, with
      // another test file beside this one: --timeout leaves it three times that.
      const port = await freePort();
      const p = execa(BIN, ['run', GOOD, '--timeout', '60', '--publish', `${port}:22`], {
        reject: false,
        stdin: 'ignore',
      });
      try {
        const where = await until(() => (tcpListeners(port).length ? tcpListeners(port) : undefined), {
          seconds: 60,
          what: `a listener for --publish ${port}:22`,
          ended: p,
        });
        expect(where).toEqual([`127.0.0.1:${port}`]);
      } catch (e) {
        p.kill('SIGTERM');
        await p;
        throw e;
      }
      const r = await p;
      expect(r.exitCode).toBe(20);
      expect(r.stderr).toContain('stopped QEMU after --timeout 60 s');
      expect(r.stdout, 'the console up to --timeout').toContain('Linux version');
      expect(await qemuPids()).toEqual([]);
    });
  });
});
