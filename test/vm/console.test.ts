// Console watcher replayed on recorded serial transcripts (real QEMU boots under TCG) and on crafted ones.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConsoleCleaner, ConsoleWatcher, LineBuffer, type WatchOptions } from '../../src/vm/console.js';

const transcript = (name: string) => readFileSync(join(import.meta.dirname, 'transcripts', name));

/** Feeds a transcript in uneven chunks (so escapes, UTF-8 and prompts get split), 1 ms of "time" per byte. */
function replay(data: Buffer | string, opts: WatchOptions = {}, msPerByte = 1) {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const w = new ConsoleWatcher(opts);
  let text = '';
  let seed = 7;
  for (let i = 0; i < buf.length && !w.verdict;) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (seed % 97);
    text += w.feed(buf.subarray(i, i + n), Math.min(i + n, buf.length) * msPerByte);
    i += n;
  }
  return { w, text, end: buf.length * msPerByte };
}

describe('ConsoleCleaner', () => {
  it('removes escapes split across chunks and normalises line ends', () => {
    const raw = 'A\x1b[0;32m  OK  \x1b[0m]\r\nB\x1b]0;title\x07C\x1b(BD\x1bcE\rF\n';
    const c = new ConsoleCleaner();
    let out = '';
    for (const ch of Buffer.from(raw)) out += c.push(Buffer.from([ch]));
    expect(out).toBe('A  OK  ]\nBCDE\nF\n');
  });

  it('decodes UTF-8 split between chunks', () => {
    const c = new ConsoleCleaner();
    const b = Buffer.from('systemd-update-ut… Record');
    expect(c.push(b.subarray(0, 18)) + c.push(b.subarray(18))).toBe('systemd-update-ut… Record');
  });

  it('keeps an unfinished line as partial', () => {
    const l = new LineBuffer();
    expect(l.push('a\nb\nlocalhost log')).toEqual(['a', 'b']);
    expect(l.push('in: ')).toEqual([]);
    expect(l.partial).toBe('localhost login: ');
  });
});

describe('ConsoleWatcher on a Debian boot to a login prompt (no readiness marker)', () => {
  const log = transcript('debian-bios-login.txt');

  it('times firmware → kernel → init → login and passes on the prompt after the grace period', () => {
    const { w, end } = replay(log);
    expect(w.verdict).toBeUndefined(); // still waiting for a marker that a --raw disk never prints
    const m = w.milestones;
    expect(m.firmware).toBeLessThan(m.kernel!);
    expect(m.kernel).toBeLessThan(m.init!);
    expect(m.init).toBeLessThan(m.login!);
    expect(m.login).toBeGreaterThan(end - 100);
    expect(w.kernelRelease).toBe('6.1.0-50-cloud-amd64');
    expect(w.tick(m.login! + 9_999)).toBeUndefined();
    expect(w.tick(m.login! + 10_000)).toMatchObject({
      status: 'ready',
      matched: 'login',
      at: m.login,
      line: 'localhost login:',
    });
    expect(m.ready).toBe(m.login);
  });

  it('passes on the readiness marker when it follows the prompt within the grace period', () => {
    const nonce = '1'.repeat(32);
    const { w } = replay(
      Buffer.concat([log, Buffer.from(`\r\nimg2vm-ready: nonce=${nonce} kernel=6.1.0-51-amd64\r\n`)]),
      { nonce },
    );
    expect(w.verdict).toMatchObject({
      status: 'ready',
      matched: 'marker',
      line: `img2vm-ready: nonce=${nonce} kernel=6.1.0-51-amd64`,
    });
    expect(w.kernelRelease).toBe('6.1.0-51-amd64');
    expect(w.milestones.marker).toBe(w.milestones.ready);
  });

  it('until=login: ready at the prompt itself', () => {
    const { w } = replay(log, { until: 'login' });
    expect(w.verdict).toMatchObject({ status: 'ready', matched: 'login' });
  });

  it('--expect: a custom pattern, and neither the prompt nor the marker counts', () => {
    const a = replay(log, { expect: /Reached target .*multi-user\.target/ });
    expect(a.w.verdict).toMatchObject({ status: 'ready', matched: 'expect' });
    expect(a.w.verdict!.line).toContain('multi-user.target');
    expect(a.w.verdict!.at).toBeLessThan(a.w.milestones.login ?? Infinity);
    const b = replay(Buffer.concat([log, Buffer.from('\r\nimg2vm-ready: 6.1\r\n')]), { expect: /never printed/ });
    expect(b.w.verdict).toBeUndefined();
    expect(b.w.tick(b.end + 60_000)).toBeUndefined();
  });
});

describe('ConsoleWatcher fails early with the reason', () => {
  it('GRUB rescue mode names the missing device', () => {
    const { w } = replay(transcript('grub-rescue.txt'));
    expect(w.verdict).toMatchObject({
      status: 'failed',
      reason: 'GRUB entered rescue mode (error: no such device: ac5b47d9-f427-46f2-a78e-83ffb17eeac4.)',
    });
    expect(w.milestones.kernel).toBeUndefined();
  });

  it('kernel panic stops at the panic line, not at the end of the trace', () => {
    const data = transcript('kernel-panic.txt');
    const { w } = replay(data);
    expect(w.verdict).toMatchObject({
      status: 'failed',
      reason: 'kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)',
    });
    const panicAt = data.indexOf('Kernel panic - not syncing');
    expect(w.verdict!.at).toBeLessThan(panicAt + 200);
  });

  it('the initramfs shell, with the device it waited for', () => {
    const { w } = replay(transcript('initramfs-shell.txt'));
    expect(w.verdict).toMatchObject({
      status: 'failed',
      reason:
        'dropped to the initramfs emergency shell (ALERT!  UUID=00000000-1111-2222-3333-444444444444 does not exist.  Dropping to a shell!)',
    });
  });

  it('systemd emergency mode, with the first failed unit', () => {
    const t = [
      '[    0.000000] Linux version 6.1.0 (x)\r\n',
      '[    1.0] systemd[1]: systemd 252 running in system mode\r\n',
      '[\x1b[0;1;31mFAILED\x1b[0m] Failed to mount \x1b[0;1;39mboot-efi.mount\x1b[0m - /boot/efi.\r\n',
      '[DEPEND] Dependency failed for local-fs.target - Local File Systems.\r\n',
      'You are in emergency mode. After logging in, type "journalctl -xb" to view\r\n',
    ].join('');
    const { w } = replay(t);
    expect(w.verdict).toMatchObject({
      status: 'failed',
      reason: 'systemd entered emergency mode ([FAILED] Failed to mount boot-efi.mount - /boot/efi.)',
    });
  });

  it('firmware that finds nothing to boot (SeaBIOS, OVMF, UEFI shell)', () => {
    expect(
      replay(
        'SeaBIOS (version 1.16)\r\nBooting from Hard Disk...\r\nBoot failed: not a bootable disk\r\n\r\nNo bootable device.  Retrying in 60 seconds.\r\n',
      ).w.verdict,
    ).toMatchObject({ status: 'failed', reason: 'the BIOS found no bootable disk (Boot failed: not a bootable disk)' });
    expect(
      replay(
        'BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0): Not Found\r\nBdsDxe: No bootable option or device was found.\r\n',
      ).w.verdict,
    ).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining('the UEFI firmware found nothing to boot (BdsDxe: failed to load Boot0001'),
    });
    expect(replay('UEFI Interactive Shell v2.2\r\nShell> ').w.verdict).toMatchObject({ status: 'failed' });
  });

  it('a GRUB error that nothing follows fails after the grace period; one the kernel follows does not', () => {
    const stuck = replay("GRUB loading.\r\nerror: file `/boot/grub/x86_64-efi/normal.mod' not found.\r\n", {
      grubGraceMs: 15_000,
    });
    expect(stuck.w.verdict).toBeUndefined();
    expect(stuck.w.tick(stuck.end + 15_000)).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining('GRUB failed: error: file'),
    });
    const fine = replay(
      "error: file `/boot/grub/locale/en.mo.gz' not found.\r\n[    0.000000] Linux version 6.1.0 (x)\r\n",
    );
    expect(fine.w.tick(fine.end + 60_000)).toBeUndefined();
  });
});

describe('ConsoleWatcher does not fail on look-alikes', () => {
  it('GRUB patterns are ignored once the kernel runs, and "Last login:" is not a prompt', () => {
    const t = [
      '[    0.000000] Linux version 6.1.0 (x)\r\n',
      'error: no such device: this is userland now\r\n',
      'grub> \r\n',
      'Last login: Mon Nov 24 04:00:00 UTC 2026 on ttyS0\r\n',
    ].join('');
    const { w } = replay(t);
    expect(w.verdict).toBeUndefined();
    expect(w.milestones.login).toBeUndefined();
  });

  it('the readiness unit announced by systemd is not the marker', () => {
    const { w } = replay(
      '[    0.1] Linux version 6.1.0 (x)\r\n         Starting img2vm-ready.service - img2vm readiness marker...\r\n',
    );
    expect(w.verdict).toBeUndefined();
    expect(w.milestones.marker).toBeUndefined();
  });

  it('keeps the last console lines for the failure report', () => {
    const { w } = replay(transcript('grub-rescue.txt'));
    expect(w.lastLines(3)).toEqual([
      'error: no such device: ac5b47d9-f427-46f2-a78e-83ffb17eeac4.',
      'error: unknown filesystem.',
      'grub rescue> ',
    ]);
  });
});

describe('GRUB banner redrawn onto the error line', () => {
  it('keeps only the error in the reason', () => {
    const w = new ConsoleWatcher();
    w.feed('error: no such device: d79141a5-aea9.\x1b[2J\x1b[HGNU GRUB  version 2.06-13+deb12u2\r\n\r\ngrub> ', 100);
    w.tick(200);
    expect(w.verdict).toMatchObject({ status: 'failed' });
    expect(JSON.stringify(w.verdict)).toContain('(error: no such device: d79141a5-aea9.)');
    expect(JSON.stringify(w.verdict)).not.toContain('GNU GRUB');
  });

  it('finds the error after what GRUB printed before it on the same line', () => {
    const w = new ConsoleWatcher();
    w.feed('Welcome to GRUB!\x1b[2J\x1b[Herror: no such device: d79141a5-aea9.GNU GRUB  version 2.06\r\ngrub> ', 100);
    expect(w.verdict).toMatchObject({
      status: 'failed',
      reason: 'GRUB stopped at its command line (no usable grub.cfg?) (error: no such device: d79141a5-aea9.)',
    });
  });
});

describe("ConsoleWatcher believes readiness lines only when they carry this boot's nonce", () => {
  const NONCE = '5e'.repeat(16);
  const OTHER = '0'.repeat(32);
  const BOOT =
    '[    0.000000] Linux version 6.1.0-28-cloud-amd64 (x)\r\n[    1.0] systemd[1]: systemd 252 running in system mode\r\n';
  const checking = (n = NONCE) => `img2vm-checking: nonce=${n}\r\n`;
  const ready = (n = NONCE) => `img2vm-ready: nonce=${n} kernel=6.1.0-28-cloud-amd64\r\n`;
  const degraded = (state: string, failed: string, waiting = '', n = NONCE) =>
    `img2vm-degraded: nonce=${n} kernel=6.1.0-28-cloud-amd64 state=${state} failed=${failed} waiting=${waiting}\r\n`;

  it('passes on the marker with the nonce, and takes the kernel release from it', () => {
    const { w } = replay(BOOT + checking() + ready(), { nonce: NONCE });
    expect(w.verdict).toMatchObject({
      status: 'ready',
      matched: 'marker',
      line: `img2vm-ready: nonce=${NONCE} kernel=6.1.0-28-cloud-amd64`,
    });
    expect(w.kernelRelease).toBe('6.1.0-28-cloud-amd64');
    expect(w.milestones.marker).toBe(w.milestones.ready);
  });

  it('ignores a marker canned in the image or printed early: without a nonce, with another, or from an older img2vm', () => {
    const forged =
      'img2vm-ready: 6.1.0-28-cloud-amd64\r\n' +
      ready(OTHER) +
      checking(OTHER) +
      degraded('degraded', 'x.service', '', OTHER);
    const { w, end } = replay(BOOT + forged, { nonce: NONCE });
    expect(w.verdict).toBeUndefined();
    expect(w.milestones.marker).toBeUndefined();
    expect(w.tick(end + 3_600_000)).toBeUndefined();
    expect(w.ignored[0]).toBe('img2vm-ready: 6.1.0-28-cloud-amd64');
    expect(w.ignored).toHaveLength(4);
    // The true marker still decides after the forgeries.
    w.feed(ready(), end + 1);
    expect(w.verdict).toMatchObject({ status: 'ready', matched: 'marker' });
  });

  it('with no nonce to expect, no marker is believed', () => {
    const { w, end } = replay(BOOT + ready(), {});
    expect(w.tick(end + 3_600_000)).toBeUndefined();
  });

  it('fails on a degraded system, naming the failed units', () => {
    const { w } = replay(BOOT + checking() + degraded('degraded', 'img2vm-e2e-false.service,other@x.service'), {
      nonce: NONCE,
    });
    expect(w.verdict).toMatchObject({
      status: 'failed',
      reason: 'the guest came up degraded: failed units: img2vm-e2e-false.service, other@x.service',
      hint: expect.stringContaining('systemctl status'),
    });
    expect(w.milestones.marker).toBeDefined();
  });

  it('names what a system still starting waited for, and lists at most 10 units', () => {
    const many = Array.from({ length: 12 }, (_, i) => `u${i}.service`).join(',');
    expect(
      replay(BOOT + degraded('starting', '', 'slow.service,slower.mount'), { nonce: NONCE }).w.verdict,
    ).toMatchObject({
      status: 'failed',
      reason: 'the guest was still starting when its readiness check gave up: waiting for slow.service, slower.mount',
    });
    expect(replay(BOOT + degraded('degraded', many), { nonce: NONCE }).w.verdict).toMatchObject({
      reason:
        'the guest came up degraded: failed units: u0.service, u1.service, u2.service, u3.service, u4.service, u5.service, u6.service, u7.service, u8.service, u9.service and 2 more',
    });
    expect(replay(BOOT + degraded('maintenance', 'a.service'), { nonce: NONCE }).w.verdict).toMatchObject({
      reason: "the guest's system is in state maintenance; failed units: a.service",
    });
  });

  it('once the check has begun, a login prompt no longer passes on its own, with or without --login', () => {
    const prompt = 'Debian GNU/Linux 12 localhost ttyS0\r\n\r\nlocalhost login: ';
    const a = replay(BOOT + checking() + prompt, { nonce: NONCE });
    expect(a.w.tick(a.end + 3_600_000)).toBeUndefined();
    a.w.feed(degraded('degraded', 'x.service'), a.end + 3_600_001);
    expect(a.w.verdict).toMatchObject({ status: 'failed' });
    const b = replay(BOOT + checking() + prompt, { nonce: NONCE, until: 'login' });
    expect(b.w.verdict).toBeUndefined();
    b.w.feed(ready(), b.end + 1);
    expect(b.w.verdict).toMatchObject({ status: 'ready', matched: 'marker' });
    // A check with another nonce does not hold the prompt back.
    const c = replay(BOOT + checking(OTHER) + prompt, { nonce: NONCE, until: 'login' });
    expect(c.w.verdict).toMatchObject({ status: 'ready', matched: 'login' });
  });

  it('a guest whose check could not read the nonce fails at once, saying so', () => {
    const { w } = replay(BOOT + checking('none'), { nonce: NONCE });
    expect(w.verdict).toMatchObject({
      status: 'failed',
      reason: expect.stringMatching(/^the guest's readiness check found no nonce \(img2vm-checking: nonce=none\)/),
    });
  });

  it('--expect alone decides: readiness lines are not consulted', () => {
    const { w } = replay(BOOT + checking() + degraded('degraded', 'x.service') + 'hello\r\n', {
      nonce: NONCE,
      expect: /hello/,
    });
    expect(w.verdict).toMatchObject({ status: 'ready', matched: 'expect' });
  });
});
