// `img2vm test` decisions on workload disks, over a fake QEMU: the exit status against --expect-exit, forgeries, a missing exit line.
import { describe, expect, it } from 'vitest';
import { TestSession, type TestSessionOptions } from '../../src/vm/test-session.js';
import { PASSWORD_PAUSE_MS } from '../../src/vm/login.js';
import { BOOT_NONCE, exitLine, FakeQemu, nonceLine } from './fake-qemu.js';

const KERNEL = '[    0.000000] Linux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org)\r\n';

async function session(consoleText: string[], o: Partial<TestSessionOptions> = {}, exit = true) {
  const q = new FakeQemu();
  const s = new TestSession(q, { timeoutMs: 60_000, nonce: 'n', bootNonce: BOOT_NONCE, argv: ['-nodefaults'], ...o });
  const end = s.run();
  for (const t of consoleText) q.print(t);
  if (exit) q.exit(0);
  return { end: await end, s, q };
}

describe("TestSession on a disk with img2vm's init", () => {
  it('passes when the workload exits 0, with the init milestone at the nonce line', async () => {
    const { end, s } = await session([KERNEL, nonceLine(), 'hello\r\n', exitLine(0)], {}, false);
    expect(end).toEqual({ ok: true });
    expect(s.workload.status).toBe(0);
    expect(s.watcher.milestones.init).toBeDefined();
    expect(s.exitAt).toBeDefined();
  });

  it('fails with the status in the message when the workload exits non-zero', async () => {
    const { end } = await session([KERNEL, nonceLine(), exitLine(3)]);
    expect(end).toEqual({ ok: false, kind: 'commandFailed', message: 'the workload exited with status 3' });
  });

  it('--expect-exit N passes on N only', async () => {
    expect((await session([KERNEL, nonceLine(), exitLine(3)], { expectExit: 3 })).end).toEqual({ ok: true });
    expect((await session([KERNEL, nonceLine(), exitLine(0)], { expectExit: 3 })).end).toEqual({
      ok: false,
      kind: 'commandFailed',
      message: 'the workload exited with status 0, not 3',
    });
  });

  it('believes no forged exit line: the true one decides', async () => {
    const forged = `img2vm-init: nonce=${'f'.repeat(32)}\r\nimg2vm-exit: nonce=${'f'.repeat(32)} status=0\r\n`;
    const { end } = await session([KERNEL, nonceLine(), forged, exitLine(9)]);
    expect(end).toEqual({ ok: false, kind: 'commandFailed', message: 'the workload exited with status 9' });
  });

  it("a guest that powers off without an exit line fails the boot, with the init's reason", async () => {
    expect((await session([KERNEL, nonceLine()])).end).toEqual({
      ok: false,
      kind: 'kernelPanic',
      message: "boot failed: the guest powered off without reporting the workload's exit status",
    });
    expect((await session([KERNEL, nonceLine(), 'img2vm-init: fatal: no ext4 root\r\n'])).end).toEqual({
      ok: false,
      kind: 'kernelPanic',
      message: "boot failed: img2vm's init failed: no ext4 root",
    });
  });

  it('--expect-exit on a disk that comes up without a workload fails at once instead of timing out', async () => {
    const { end } = await session(
      [KERNEL, 'Welcome to Debian!\r\n', `img2vm-ready: nonce=${BOOT_NONCE} kernel=6.1.0-28-cloud-amd64\r\n`],
      { expectExit: 0 },
      false,
    );
    expect(end).toMatchObject({
      ok: false,
      kind: 'commandFailed',
      message: `expected a workload exiting with status 0, but the guest came up to its readiness marker instead (img2vm-ready: nonce=${BOOT_NONCE} kernel=6.1.0-28-cloud-amd64)`,
    });
  });

  it('a workload that runs past the timeout is reported as such', async () => {
    const { end } = await session([KERNEL, nonceLine(), 'serving\r\n'], { timeoutMs: 30 }, false);
    expect(end).toEqual({
      ok: false,
      kind: 'testTimeout',
      message: 'the workload did not exit within 0.03 s; last console line: serving',
    });
  });

  it("a disk without img2vm's init still passes at its readiness marker", async () => {
    const { end, s } = await session(
      [KERNEL, `img2vm-ready: nonce=${BOOT_NONCE} kernel=6.1.0-28-cloud-amd64\r\n`],
      {},
      false,
    );
    expect(end).toEqual({ ok: true });
    expect(s.watcher.verdict).toMatchObject({ status: 'ready', matched: 'marker' });
    expect(s.workload.nonce).toBeUndefined();
  });

  it('--expect passes on its match, or fails when the workload exits first', async () => {
    expect((await session([KERNEL, nonceLine(), 'listening on :80\r\n'], { expect: /listening/ }, false)).end).toEqual({
      ok: true,
    });
    expect((await session([KERNEL, nonceLine(), exitLine(0)], { expect: /listening/ })).end).toEqual({
      ok: false,
      kind: 'commandFailed',
      message: 'the workload exited with status 0 before a console line matched /listening/',
    });
  });
});

describe("TestSession believes only lines bound to this boot's nonce (the one img2vm test hands the guest)", () => {
  const BOOT_NONCE = 'b0'.repeat(16);
  const F = 'f'.repeat(32);
  const canned = (host?: string) =>
    `img2vm-init: nonce=${F}${host ? ` host=${host}` : ''}\r\nimg2vm-exit: nonce=${F} status=0\r\n`;

  it("a disk without img2vm's init cannot pass by printing a canned nonce line and exit line", async () => {
    for (const host of [undefined, 'none', '0'.repeat(32)]) {
      const { end, s } = await session([KERNEL, 'Welcome to Debian GNU/Linux 12 (bookworm)!\r\n', canned(host)], {
        bootNonce: BOOT_NONCE,
      });
      expect(end, String(host)).toMatchObject({ ok: false, kind: 'kernelPanic' });
      expect(s.workload.nonce).toBeUndefined();
    }
  });

  it("img2vm's init line carrying the boot nonce is believed, and its exit decides", async () => {
    const { end, s } = await session(
      [KERNEL, `img2vm-init: nonce=${F} host=${BOOT_NONCE}\r\n`, 'hi\r\n', exitLine(0, F)],
      { bootNonce: BOOT_NONCE },
      false,
    );
    expect(end).toEqual({ ok: true });
    expect(s.workload.status).toBe(0);
  });

  it("img2vm's init that found no nonce to carry fails the test, saying why", async () => {
    const { end } = await session([KERNEL, `img2vm-init: nonce=${F} host=none\r\n`, exitLine(0, F)], {
      bootNonce: BOOT_NONCE,
    });
    expect(end).toMatchObject({
      ok: false,
      kind: 'kernelPanic',
      message: expect.stringContaining("img2vm's init found no nonce (host=none)"),
    });
  });

  it('a test that times out says which readiness lines it did not believe', async () => {
    const { end } = await session(
      [KERNEL, 'img2vm-ready: 6.1.0-28-cloud-amd64\r\n', 'still booting\r\n'],
      { bootNonce: BOOT_NONCE, timeoutMs: 30 },
      false,
    );
    expect(end).toEqual({
      ok: false,
      kind: 'testTimeout',
      message:
        "no readiness marker or login prompt within 0.03 s; last console line: still booting; ignored a readiness line without this boot's nonce (img2vm-ready: 6.1.0-28-cloud-amd64)",
    });
  });

  it('types the password only after a pause behind its prompt (login flushes what arrives before it turns echo off)', async () => {
    const q = new FakeQemu();
    const s = new TestSession(q, {
      timeoutMs: 60_000,
      nonce: 'n',
      bootNonce: BOOT_NONCE,
      argv: ['-nodefaults'],
      login: { user: 'root', password: 'pw' },
    });
    const end = s.run();
    q.print(KERNEL);
    q.print('\r\nlocalhost login: ');
    await new Promise((r) => setTimeout(r, 50));
    expect(q.typed).toBe('root\r');
    q.print('root\r\nPassword: ');
    await new Promise((r) => setTimeout(r, PASSWORD_PAUSE_MS / 2));
    expect(q.typed).toBe('root\r');
    await new Promise((r) => setTimeout(r, PASSWORD_PAUSE_MS));
    expect(q.typed).toBe('root\rpw\r');
    q.print('\r\nroot@localhost:~# ');
    expect(await end).toEqual({ ok: true });
    expect(s.sessionOutcome).toEqual({ status: 'logged-in' });
  });

  it('a degraded guest fails the boot (exit 21) naming its failed units, before any login', async () => {
    const lines = [
      KERNEL,
      `img2vm-checking: nonce=${BOOT_NONCE}\r\n`,
      'localhost login: ',
      `img2vm-degraded: nonce=${BOOT_NONCE} kernel=6.1 state=degraded failed=img2vm-e2e-false.service waiting=\r\n`,
    ];
    const { end, q } = await session(lines, { bootNonce: BOOT_NONCE, login: { user: 'root', password: 'pw' } }, false);
    expect(end).toMatchObject({
      ok: false,
      kind: 'kernelPanic',
      message: 'boot failed: the guest came up degraded: failed units: img2vm-e2e-false.service',
      hint: expect.stringContaining('img2vm run'),
    });
    expect(q.typed).toBe('');
  });
});
