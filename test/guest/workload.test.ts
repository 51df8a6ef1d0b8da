// What img2vm's init runs, decided from the image config as docker would read it.
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { decideInit, processOf } from '../../src/guest/workload.js';

const userland = { login: true, modprobe: false, shell: '/bin/bash' };
const p = (entrypoint: string[], cmd: string[], user = '', cwd = '/') => ({ entrypoint, cmd, env: ['A=b'], cwd, user });

describe('decideInit', () => {
  it('runs a command as the workload, ENTRYPOINT then CMD, with the image user and working directory', () => {
    expect(decideInit(p(['/app'], ['--port', '80'], 'nobody', '/srv'), false, userland)).toMatchObject({
      mode: 'workload',
      argv: ['/app', '--port', '80'],
      user: 'nobody',
      cwd: '/srv',
      login: false,
    });
    // a shell with arguments is a command
    expect(decideInit(p([], ['/bin/sh', '-c', 'echo hi']), true, userland)).toMatchObject({
      mode: 'workload',
      argv: ['/bin/sh', '-c', 'echo hi'],
    });
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
    expect(decideInit(p([], ['/bin/bash']), true, userland)).toMatchObject({
      mode: 'console',
      argv: ['/bin/bash'],
      login: true,
    });
    expect(decideInit(p([], ['sh']), false, { ...userland, login: false })).toMatchObject({
      mode: 'console',
      login: false,
    });
    // with a password and no getty and login, the conversion is refused (console-login.test.ts)
  });
  it('--entrypoint-service: the console as in console mode, the command beside it with the image user and directory', () => {
    const d = decideInit(p(['/app'], ['--port', '80'], 'nobody', '/srv'), true, userland, true);
    expect(d).toEqual({
      mode: 'console',
      argv: [],
      service: ['/app', '--port', '80'],
      user: 'nobody',
      cwd: '/srv',
      login: true,
      why: expect.stringMatching(/as a service \(restarted when it fails\) beside a login prompt/),
    });
    // without a password (or a getty) the console is a root shell; a bare shell or an init as CMD is still the service
    expect(decideInit(p([], ['/bin/sh']), false, userland, true)).toMatchObject({
      mode: 'console',
      argv: [],
      service: ['/bin/sh'],
      login: false,
      why: expect.stringMatching(/beside a root shell/),
    });
    expect(decideInit(p([], ['/sbin/init']), false, { ...userland, login: false }, true)).toMatchObject({
      mode: 'console',
      service: ['/sbin/init'],
      login: false,
    });
    // before the image's userland is known, nothing is refused
    expect(decideInit(p(['/app'], []), false, undefined, true)).toMatchObject({ mode: 'console', service: ['/app'] });
    // no option, no service
    expect(decideInit(p(['/app'], []), false, userland)).not.toHaveProperty('service');
  });
  it('--entrypoint-service refuses an image without a command, or without anything to put on the console', () => {
    const usage = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(Img2vmError);
        return e as Img2vmError;
      }
      throw new Error('no error');
    };
    const none = usage(() => decideInit(p([], []), true, userland, true));
    expect(none).toMatchObject({ kind: 'usage', message: '--entrypoint-service: the image has no ENTRYPOINT or CMD' });
    const scratch = usage(() =>
      decideInit(p(['/app'], []), false, { login: false, modprobe: false, shell: null }, true),
    );
    expect(scratch.kind).toBe('usage');
    expect(scratch.message).toMatch(/no shell for it/);
    // a login prompt is a console even when no shell was found
    expect(decideInit(p(['/app'], []), true, { login: true, modprobe: false, shell: null }, true).login).toBe(true);
  });
  it('treats a missing User as uid 0 (the init resolves names in the image only when one is given)', () => {
    expect(decideInit(p(['/app'], []), false, userland).user).toBe('');
    expect(processOf({ Entrypoint: null, Cmd: ['x'], Env: null, WorkingDir: '', User: null })).toEqual({
      entrypoint: [],
      cmd: ['x'],
      env: [],
      cwd: '/',
      user: '',
    });
    expect(processOf(undefined)).toEqual({ entrypoint: [], cmd: [], env: [], cwd: '/', user: '' });
  });
});
