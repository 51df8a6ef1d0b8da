// What img2vm's init runs, decided from the image config as docker would read it.
import { describe, expect, it } from 'vitest';
import { decideInit, processOf } from '../../src/guest/workload.js';

const userland = { login: true, modprobe: false, shell: '/bin/bash' };
const p = (entrypoint: string[], cmd: string[], user = '', cwd = '/') => ({ entrypoint, cmd, env: ['A=b'], cwd, user });

describe('decideInit', () => {
  it('runs a command as the workload, ENTRYPOINT then CMD, with the image user and working directory', () => {
    expect(decideInit(p(['/app'], ['--port', '80'], 'nobody', '/srv'), false, userland)).toMatchObject({ mode: 'workload', argv: ['/app', '--port', '80'], user: 'nobody', cwd: '/srv', login: false });
    // a shell with arguments is a command
    expect(decideInit(p([], ['/bin/sh', '-c', 'echo hi']), true, userland)).toMatchObject({ mode: 'workload', argv: ['/bin/sh', '-c', 'echo hi'] });
  });
  it('hands PID 1 to an init system given as the whole CMD', () => {
    for (const init of ['/sbin/init', '/lib/systemd/systemd', 'systemd', '/usr/sbin/init']) {
      expect(decideInit(p([], [init]), true, userland)).toMatchObject({ mode: 'init', argv: [init] });
    }
    // behind an ENTRYPOINT it is the entrypoint's argument, not the init
    expect(decideInit(p(['/entry.sh'], ['/sbin/init']), false, userland).mode).toBe('workload');
  });
  it('gives the console for no command or a bare shell: a login prompt with a password and getty, else a root shell', () => {
    expect(decideInit(p([], []), false, userland)).toMatchObject({ mode: 'console', argv: [], login: false });
    expect(decideInit(p([], ['/bin/bash']), true, userland)).toMatchObject({ mode: 'console', argv: ['/bin/bash'], login: true });
    expect(decideInit(p([], ['sh']), true, { ...userland, login: false })).toMatchObject({ mode: 'console', login: false });
  });
  it('treats a missing User as uid 0 (the init resolves names in the image only when one is given)', () => {
    expect(decideInit(p(['/app'], []), false, userland).user).toBe('');
    expect(processOf({ Entrypoint: null, Cmd: ['x'], Env: null, WorkingDir: '', User: null })).toEqual({ entrypoint: [], cmd: ['x'], env: [], cwd: '/', user: '' });
    expect(processOf(undefined)).toEqual({ entrypoint: [], cmd: [], env: [], cwd: '/', user: '' });
  });
});
