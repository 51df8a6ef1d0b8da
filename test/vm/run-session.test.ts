// `img2vm run` as a session over a fake QEMU: the workload's output and status, ^C on an interruption, bounded waits.
import { describe, expect, it } from 'vitest';
import type { Machine } from '../../src/vm/machine.js';
import { concludeRun, RunSession, SignalInterrupt, type RunEnd, type RunIo } from '../../src/vm/run.js';
import { exitLine, FakeQemu, nonceLine } from './fake-qemu.js';

function io(terminal = false): RunIo & { out: string; lines: string[] } {
  const r = {
    out: '',
    lines: [] as string[],
    terminal,
    output: (b: Buffer) => {
      r.out += b.toString();
    },
    own: (l: string) => {
      r.lines.push(l);
    },
  };
  return r;
}

describe('RunSession', () => {
  it("relays the workload's output without img2vm's lines and learns its status; QEMU ends by itself", async () => {
    const q = new FakeQemu();
    const u = io();
    const s = new RunSession(q, { io: u });
    const end = s.run();
    q.print(`SeaBIOS\r\n${nonceLine()}hello\r\n`);
    q.print(`img2vm-exit: nonce=${'f'.repeat(32)} status=0\r\n${exitLine(5)}`);
    q.exit(0);
    expect(await end).toEqual({ kind: 'exit', code: 0, signal: undefined });
    expect(s.console.status).toBe(5);
    // not a terminal: the boot text before the nonce line is not the workload's (shown with -v only)
    expect(u.out).toBe(`hello\r\nimg2vm-exit: nonce=${'f'.repeat(32)} status=0\r\n`);
    expect(u.lines).toEqual(['boot: SeaBIOS', nonceLine().trim(), exitLine(5).trim()]);
  });

  it('on a terminal shows the boot text as it comes; without a nonce line releases it after a while', async () => {
    const q = new FakeQemu();
    const t = io(true);
    const end = new RunSession(q, { io: t }).run();
    q.print(`SeaBIOS\r\n${nonceLine()}hello\r\n`);
    q.exit(0);
    await end;
    expect(t.out).toBe('SeaBIOS\r\nhello\r\n');

    const q2 = new FakeQemu();
    const u = io();
    const end2 = new RunSession(q2, { io: u, bootHoldMs: 20 }).run();
    q2.print('GRUB loading.\r\n');
    expect(u.out).toBe('');
    await new Promise((r) => setTimeout(r, 60));
    expect(u.out).toBe('GRUB loading.\r\n');
    q2.print('Debian login: ');
    expect(u.out).toBe('GRUB loading.\r\nDebian login: ');
    q2.exit(0);
    await end2;
  });

  it('forwards what the user types to the guest', async () => {
    const q = new FakeQemu();
    const u = io();
    const { PassThrough } = await import('node:stream');
    const input = new PassThrough();
    const end = new RunSession(q, { io: { ...u, input } }).run();
    input.write('ls\r');
    await new Promise((r) => setImmediate(r));
    q.exit(0);
    await end;
    expect(q.typed).toBe('ls\r');
  });

  it("an interruption types ^C and waits for the workload's exit line, then ends as interrupted", async () => {
    const q = new FakeQemu();
    const ac = new AbortController();
    const s = new RunSession(q, { io: io(), interruptGraceMs: 60_000 });
    q.onTyped = (all) => {
      // The guest's terminal turns ^C into SIGINT: the workload dies of it and the init reports 130.
      if (all === '\x03') {
        q.print(exitLine(130));
        q.exit(0);
      }
    };
    const end = s.run(ac.signal);
    q.print(nonceLine());
    await new Promise((r) => setImmediate(r));
    ac.abort(new SignalInterrupt('SIGTERM'));
    expect(await end).toEqual({ kind: 'interrupted', signal: 'SIGTERM' });
    expect(q.typed).toBe('\x03');
    expect(s.console.status).toBe(130);
  });

  it('a guest that ignores ^C is stopped after the grace', async () => {
    const q = new FakeQemu();
    const ac = new AbortController();
    const end = new RunSession(q, { io: io(), interruptGraceMs: 20 }).run(ac.signal);
    q.print(nonceLine());
    ac.abort(new SignalInterrupt('SIGINT'));
    expect(await end).toEqual({ kind: 'interrupted', signal: 'SIGINT' });
    expect(q.stops).toBe(1);
  });

  it('stops a guest that does not power off after its exit line', async () => {
    const q = new FakeQemu();
    const s = new RunSession(q, { io: io(), poweroffGraceMs: 20 });
    const end = s.run();
    q.print(`${nonceLine()}${exitLine(0)}`);
    expect(await end).toEqual({ kind: 'exit', code: undefined, signal: 'SIGTERM' });
    expect(s.console.status).toBe(0);
  });

  it('ends at the timeout', async () => {
    const q = new FakeQemu();
    expect(await new RunSession(q, { io: io(), timeoutMs: 20 }).run()).toEqual({ kind: 'timeout' });
    expect(q.stops).toBe(1);
  });

  it('a guest that powers off without an exit line leaves the status unknown, and says why when the init did', async () => {
    const q = new FakeQemu();
    const s = new RunSession(q, { io: io() });
    const end = s.run();
    q.print(`${nonceLine()}img2vm-init: fatal: cannot mount the root\r\n`);
    q.exit(0);
    expect(await end).toMatchObject({ kind: 'exit', code: 0 });
    expect(s.console.status).toBeUndefined();
    expect(s.console.fatal).toBe('cannot mount the root');
  });
});

describe('RunSession with an encrypted root (img2vm run --luks-password)', () => {
  const UUID = '6c1d2f3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f';
  const PROMPT = `Please unlock disk root (LUKS2 UUID=${UUID}): `;
  const UNLOCKED = `img2vm-init: LUKS2 volume ${UUID} unlocked with keyslot 0 in 4.2 s\r\n`;

  it('types the passphrase at the prompt once, keeps the prompt out of the output, then relays the workload', async () => {
    const q = new FakeQemu();
    const u = io();
    const s = new RunSession(q, { io: u, luksPassphrase: 'open sesame' });
    const end = s.run();
    q.print(`SeaBIOS\r\n${nonceLine()}Please unlock disk `);
    await new Promise((r) => setImmediate(r));
    expect(q.typed).toBe('');
    q.print(PROMPT.slice('Please unlock disk '.length));
    await new Promise((r) => setImmediate(r));
    expect(q.typed).toBe('open sesame\n');
    q.print(`\r\n${UNLOCKED}hello from the root\r\n${exitLine(3)}`);
    q.exit(0);
    await end;
    expect(s.console.status).toBe(3);
    expect(u.out).toBe('hello from the root\r\n');
    expect(u.out).not.toContain('open sesame');
    expect(u.lines).toContain(UNLOCKED.trim());
    expect(q.typed).toBe('open sesame\n');
  });

  it('keeps the rest of the prompt line out too when the prompt arrives without its trailing space', async () => {
    const q = new FakeQemu();
    const u = io();
    const s = new RunSession(q, { io: u, luksPassphrase: 'open sesame' });
    const end = s.run();
    // the prompt matches at its colon; the space after it, and the newline the guest prints after the answer,
    // come in chunks of their own
    q.print(`${nonceLine()}${PROMPT.trimEnd()}`);
    await new Promise((r) => setImmediate(r));
    expect(q.typed).toBe('open sesame\n');
    q.print(' ');
    await new Promise((r) => setImmediate(r));
    q.print(`\r\n${UNLOCKED}hello from the root\r\n${exitLine(3)}`);
    q.exit(0);
    await end;
    expect(u.out).toBe('hello from the root\r\n');
  });

  it('ends with a clear failure (exit 23, QEMU stopped) when the guest refuses the passphrase', async () => {
    const q = new FakeQemu();
    const s = new RunSession(q, { io: io(), luksPassphrase: 'wrong' });
    const end = s.run();
    q.print(`${nonceLine()}${PROMPT}`);
    await new Promise((r) => setImmediate(r));
    q.print('\r\nimg2vm-init: No key available with this passphrase (try 1 of 3).\r\n');
    const e = await end;
    expect(e).toMatchObject({ kind: 'luks', message: 'the LUKS passphrase was refused by the guest' });
    expect(q.stops).toBeGreaterThan(0);
    const machine = { arch: 'amd64', disk: '/d', format: 'raw', firmware: 'bios', accel: 'tcg', argv: [] } as never;
    expect(() => concludeRun(e, s, machine, {}, 1)).toThrow(
      expect.objectContaining({ exitCode: 23, message: 'the LUKS passphrase was refused by the guest' }),
    );
  });

  it('without a passphrase: a script is told to give one at the prompt; a terminal user types it', async () => {
    const q = new FakeQemu();
    const end = new RunSession(q, { io: io() }).run();
    q.print(`${nonceLine()}${PROMPT}`);
    expect(await end).toMatchObject({ kind: 'luks', message: 'the guest asks for a LUKS passphrase' });

    const q2 = new FakeQemu();
    const t = io(true);
    const end2 = new RunSession(q2, { io: t }).run();
    q2.print(`${nonceLine()}${PROMPT}`);
    await new Promise((r) => setImmediate(r));
    expect(t.out).toBe(PROMPT);
    expect(q2.typed).toBe('');
    q2.exit(0);
    expect(await end2).toMatchObject({ kind: 'exit' });
  });

  it('lets output through when a disk given a passphrase never asks for one', async () => {
    const q = new FakeQemu();
    const u = io();
    const end = new RunSession(q, { io: u, luksPassphrase: 'unused' }).run();
    q.print(`${nonceLine()}no encryption here\r\n${exitLine(0)}`);
    q.exit(0);
    await end;
    expect(u.out).toBe('no encryption here\r\n');
  });
});

describe('concludeRun', () => {
  const machine: Machine = {
    arch: 'amd64',
    archReason: 'test',
    disk: '/d/app.raw',
    format: 'raw',
    firmware: 'bios',
    firmwareReason: 'MBR',
    accel: 'tcg',
    accelReason: 'test',
    console: 'pipe',
    argv: ['-nodefaults'],
  };
  /** A session that has read `console`, ended as `end`. */
  async function conclude(consoleText: string, end: RunEnd, terminal = false): Promise<ReturnType<typeof concludeRun>> {
    const q = new FakeQemu();
    const s = new RunSession(q, { io: { ...io(), terminal } });
    const run = s.run();
    q.print(consoleText);
    q.exit(0);
    await run;
    return concludeRun(end, s, machine, { timeoutMs: 5000 }, 1.5);
  }

  it("gives the workload's status to exit with", async () => {
    expect(await conclude(`${nonceLine()}${exitLine(42)}`, { kind: 'exit', code: 0 })).toEqual({
      disk: '/d/app.raw',
      format: 'raw',
      firmware: 'bios',
      accel: 'tcg',
      seconds: 1.5,
      workload: { status: 42 },
    });
    // Stopped after its exit line because it did not power off: still the workload's status.
    expect((await conclude(`${nonceLine()}${exitLine(0)}`, { kind: 'exit', signal: 'SIGTERM' })).workload).toEqual({
      status: 0,
    });
  });

  it("a disk without img2vm's init has no status: img2vm exits 0 when QEMU does", async () => {
    const r = await conclude('login: ', { kind: 'exit', code: 0 });
    expect(r.workload).toBeUndefined();
  });

  it('an interruption exits 130 or 143 and says what became of the workload', async () => {
    const e1 = await conclude(`${nonceLine()}${exitLine(130)}`, { kind: 'interrupted', signal: 'SIGINT' }).catch(
      (e: unknown) => e,
    );
    expect(e1).toMatchObject({ exitCode: 130, message: 'interrupted by SIGINT: the workload exited with status 130' });
    const e2 = await conclude(nonceLine(), { kind: 'interrupted', signal: 'SIGTERM' }).catch((e: unknown) => e);
    expect(e2).toMatchObject({
      exitCode: 143,
      message: 'interrupted by SIGTERM: the workload did not report an exit status in time; QEMU was stopped',
    });
  });

  it('a missing exit line is an error, not a status', async () => {
    await expect(conclude(nonceLine(), { kind: 'exit', code: 0 })).rejects.toMatchObject({
      kind: 'kernelPanic',
      message: "the guest powered off without reporting the workload's exit status",
    });
    await expect(
      conclude(`${nonceLine()}img2vm-init: fatal: no root\r\n`, { kind: 'exit', code: 0 }),
    ).rejects.toMatchObject({ message: "img2vm's init failed: no root" });
  });

  it('Ctrl-a x on a terminal is the user quitting, not a failed guest', async () => {
    expect(
      (await conclude(`${nonceLine()}working\r\nQEMU: Terminated\n\r`, { kind: 'exit', code: 0 }, true)).workload,
    ).toBeUndefined();
    // Without a terminal there is no monitor: the same text is only the guest's.
    await expect(
      conclude(`${nonceLine()}QEMU: Terminated\n\r`, { kind: 'exit', code: 0 }, false),
    ).rejects.toMatchObject({ kind: 'kernelPanic' });
  });

  it('a timeout exits 20, QEMU failing 22', async () => {
    await expect(conclude('', { kind: 'timeout' })).rejects.toMatchObject({
      exitCode: 20,
      message: 'stopped QEMU after --timeout 5 s',
    });
    await expect(conclude('', { kind: 'exit', code: 1 })).rejects.toMatchObject({
      exitCode: 22,
      message: 'QEMU failed (exit 1)',
    });
  });
});
