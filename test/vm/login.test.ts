// Serial-console login and command runs, replayed on a recorded session and on crafted prompts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandLine, LoginSession, parseLogin, PASSWORD_PAUSE_MS } from '../../src/vm/login.js';

describe('LoginSession', () => {
  it('replays a recorded root login (empty password) running `uname -r; id`', () => {
    const t = readFileSync(join(import.meta.dirname, 'transcripts', 'login-session.txt'), 'utf8');
    const s = new LoginSession({ user: 'root', password: '', command: 'uname -r; id', nonce: 'a6711fd1' });
    expect(s.start()).toBe('root\r');
    const cut = t.indexOf('root@localhost:~# ') + 'root@localhost:~# '.length;
    // Everything up to the shell prompt, byte by byte: the command is typed exactly once, at the prompt.
    const writes: string[] = [];
    for (const ch of t.slice(0, cut)) {
      const step = s.feed(ch);
      if (step.write) writes.push(step.write);
      expect(step.outcome).toBeUndefined();
    }
    expect(writes).toEqual([commandLine('uname -r; id', 'a6711fd1')]);
    expect(s.phase).toBe('command');
    // The echo of the typed line carries the markers split by "", so only the real output ends the session.
    const step = s.feed(t.slice(cut));
    expect(step.outcome).toEqual({
      status: 'done',
      exitCode: 0,
      output: '6.1.0-50-cloud-amd64\nuid=0(root) gid=0(root) groups=0(root)',
    });
    expect(s.phase).toBe('finished');
  });

  it('answers the password prompt and reports a non-zero exit status', () => {
    const s = new LoginSession({ user: 'admin', password: 's3cret:x', command: 'false', nonce: 'n1' });
    expect(s.start()).toBe('admin\r');
    expect(s.feed('admin\nPassword: ')).toEqual({ write: 's3cret:x\r', pauseMs: PASSWORD_PAUSE_MS });
    expect(s.feed('\nLinux host 6.1\n\nadmin@host:~$ ')).toEqual({ write: commandLine('false', 'n1') });
    expect(s.feed(`${commandLine('false', 'n1').trimEnd()}\n__IMG2VM_BEGIN_n1__\n`)).toEqual({});
    expect(s.feed('__IMG2VM_RC_n1_1__\nadmin@host:~$ ')).toEqual({
      outcome: { status: 'done', exitCode: 1, output: '' },
    });
  });

  it('fails on "Login incorrect"', () => {
    const s = new LoginSession({ user: 'root', password: 'wrong', nonce: 'n' });
    s.start();
    expect(s.feed('root\nPassword: ').write).toBe('wrong\r');
    expect(s.feed('\n\nLogin incorrect\nlocalhost login: ').outcome).toEqual({
      status: 'login-failed',
      reason: 'login as root failed: Login incorrect',
    });
  });

  it('asked to log in again after the password (login timed out: the password was lost), starts over once, then fails', () => {
    const s = new LoginSession({ user: 'root', password: 'pw', nonce: 'n' });
    s.start();
    expect(s.feed('root\nPassword: ').write).toBe('pw\r');
    const timedOut = '\nLogin timed out after 60 seconds.\n\nDebian GNU/Linux 12 localhost ttyS0\n\nlocalhost login: ';
    expect(s.feed(timedOut)).toEqual({ write: 'root\r' });
    expect(s.feed('root\nPassword: ')).toEqual({ write: 'pw\r', pauseMs: PASSWORD_PAUSE_MS });
    expect(s.feed(timedOut).outcome).toEqual({
      status: 'login-failed',
      reason: 'login as root failed: asked to log in again',
    });
  });

  it('answers a password prompt whose line other console output finished first (a service beside the login)', () => {
    const s = new LoginSession({ user: 'root', password: 'pw', nonce: 'n' });
    s.start();
    expect(s.feed('root\nPassword: service| marker run=2\n')).toEqual({ write: 'pw\r', pauseMs: PASSWORD_PAUSE_MS });
    // (the prompt's own words: "Password:" then a space, at the start of the line or after a space)
    const t = new LoginSession({ user: 'root', password: 'pw', nonce: 'n' });
    t.start();
    expect(t.feed('root\nservice| Password:x changed\n')).toEqual({});
  });

  it('without a command, passes at the first shell prompt', () => {
    const s = new LoginSession({ user: 'root', password: '', nonce: 'n' });
    s.start();
    expect(s.feed('root\n\nroot@localhost:~# ').outcome).toEqual({ status: 'logged-in' });
  });

  it('keeps kernel messages that interleave with the output', () => {
    const s = new LoginSession({ user: 'root', password: '', command: 'cat /etc/hostname', nonce: 'z' });
    s.start();
    s.feed('root@h:~# ');
    const step = s.feed('__IMG2VM_BEGIN_z__\nh\n[   30.1] random: crng init done\n__IMG2VM_RC_z_0__\n');
    expect(step.outcome).toEqual({ status: 'done', exitCode: 0, output: 'h\n[   30.1] random: crng init done' });
  });
});

describe('login helpers', () => {
  it('types the command in a subshell with stdin closed and split markers', () => {
    expect(commandLine('uname -r', 'abc')).toBe(
      'echo __IMG2VM_""BEGIN_abc__; (uname -r) </dev/null; echo __IMG2VM_""RC_abc_$?__\r',
    );
  });

  it('parses --login', () => {
    expect(parseLogin('root:')).toEqual({ user: 'root', password: '' });
    expect(parseLogin('root')).toEqual({ user: 'root', password: '' });
    expect(parseLogin('me:a:b')).toEqual({ user: 'me', password: 'a:b' });
    expect(parseLogin(':x')).toBeUndefined();
    expect(parseLogin('bad user:x')).toBeUndefined();
  });
});
