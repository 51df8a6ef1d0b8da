// --password with img2vm's init: the conversion's idea of "the image can give a login prompt" is the init's own rule,
// and an image that cannot is refused before anything is written instead of booting to a root shell with no password.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { parseConvertOptions } from '../../src/core/options.js';
import { known, type FlatFacts } from '../helpers/facts.js';
import { createRandom } from '../../src/core/random.js';
import { decideInit } from '../../src/guest/workload.js';
import { plan } from '../../src/plan.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { CONSOLE_PROGRAMS, probeUserlandInTree } from '../../src/rootfs/tree-guest.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { binPath } from '../../src/rootfs/tree-path.js';

function tree(build: (t: RootTree) => void): RootTree {
  const t = new RootTree({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });
  build(t);
  return t;
}
const file = (t: RootTree, path: string, mode = 0o755) => t.writeFile(binPath(path), '#!', { mode });
const link = (t: RootTree, path: string, target: string) => t.symlink(binPath(path), binPath(target));

/** A busybox userland as Debian's busybox-static lays it out: one binary, applets as symlinks to it. */
function busybox(applets: string[]): RootTree {
  return tree((t) => {
    file(t, '/bin/busybox');
    for (const a of applets) link(t, a, '/bin/busybox');
  });
}

function refusal(f: () => unknown): Img2vmError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(Img2vmError);
    return e as Img2vmError;
  }
  throw new Error('expected a refusal');
}

describe('the console programs img2vm looks for are the ones its init looks for', () => {
  it('lists the same paths in the same order as native/run.c', () => {
    const c = readFileSync(new URL('../../native/run.c', import.meta.url), 'utf8');
    const list = (name: string) => {
      const m = new RegExp(`static const char \\*${name}\\[\\] = \\{([^}]*)\\}`).exec(c);
      expect(m, `native/run.c declares ${name}[]`).not.toBeNull();
      return [...m![1]!.matchAll(/"([^"]+)"/g)].map((x) => x[1]);
    };
    expect(list('gettys')).toEqual([...CONSOLE_PROGRAMS.getty]);
    expect(list('logins')).toEqual([...CONSOLE_PROGRAMS.login]);
    expect(list('shells')).toEqual([...CONSOLE_PROGRAMS.shell]);
    // and the init takes a program as stat() sees it: a regular file, symlinks followed, with an execute bit
    expect(c).toMatch(/stat\(p, &st\) == 0 && S_ISREG\(st\.st_mode\) && \(st\.st_mode & 0111\)/);
  });
});

describe('probeUserlandInTree', () => {
  it('finds a login prompt when a getty and a login are executable files, through symlinks as the init follows them', () => {
    expect(probeUserlandInTree(busybox(['/sbin/getty', '/bin/login', '/bin/sh'])).login).toBe(true);
    expect(probeUserlandInTree(tree((t) => (file(t, '/usr/sbin/agetty'), file(t, '/usr/bin/login')))).login).toBe(true);
    // merged /usr: /sbin is a symlink to usr/sbin
    expect(
      probeUserlandInTree(
        tree(
          (t) => (
            file(t, '/usr/sbin/agetty'),
            file(t, '/usr/bin/login'),
            link(t, '/sbin', 'usr/sbin'),
            link(t, '/bin', 'usr/bin')
          ),
        ),
      ).login,
    ).toBe(true);
  });
  it('finds none when either is missing (a busybox image with only a shell, as busybox-static is often packed)', () => {
    expect(probeUserlandInTree(busybox(['/bin/sh'])).login).toBe(false);
    expect(probeUserlandInTree(busybox(['/sbin/getty', '/bin/sh'])).login).toBe(false);
    expect(probeUserlandInTree(busybox(['/bin/login', '/bin/sh'])).login).toBe(false);
  });
  it('finds none when a candidate is not what stat() in the guest would accept: no execute bit, a directory, dangling or looping links', () => {
    expect(probeUserlandInTree(tree((t) => (file(t, '/sbin/getty'), file(t, '/bin/login', 0o644)))).login).toBe(false);
    expect(probeUserlandInTree(tree((t) => (file(t, '/sbin/getty'), t.mkdirp(binPath('/bin/login'))))).login).toBe(
      false,
    );
    expect(probeUserlandInTree(tree((t) => (file(t, '/sbin/getty'), link(t, '/bin/login', '/nowhere')))).login).toBe(
      false,
    );
    expect(
      probeUserlandInTree(
        tree(
          (t) => (
            file(t, '/sbin/getty'),
            link(t, '/bin/login', '/usr/bin/login'),
            link(t, '/usr/bin/login', '/bin/login')
          ),
        ),
      ).login,
    ).toBe(false);
    // a link out of the root stays inside it, as after the init's chroot
    expect(
      probeUserlandInTree(tree((t) => (file(t, '/sbin/getty'), link(t, '/bin/login', '../../../../usr/bin/login'))))
        .login,
    ).toBe(false);
    // a shell without an execute bit is no shell either
    expect(probeUserlandInTree(tree((t) => file(t, '/bin/sh', 0o644))).shell).toBeNull();
  });
});

describe('--password on an image without a getty and login', () => {
  const p = (entrypoint: string[], cmd: string[]) => ({ entrypoint, cmd, env: [], cwd: '/', user: '' });
  const none = { login: false, modprobe: false, shell: '/bin/sh' };

  it('is refused wherever the console would be a root shell: no command, a bare shell, or beside a service', () => {
    for (const [what, f] of [
      ['no command', () => decideInit(p([], []), true, none)],
      ['a bare shell', () => decideInit(p([], ['/bin/sh']), true, none)],
      ['a service', () => decideInit(p(['/app'], []), true, none, true)],
    ] as const) {
      const e = refusal(f);
      expect(e.kind, what).toBe('usage');
      expect(e.exitCode).toBe(2);
      expect(e.message).toMatch(/--password.*no getty and login.*root shell/);
      expect(e.message).toContain('/sbin/agetty');
      expect(e.message).toContain('/usr/bin/login');
      // the ways out
      for (const way of [/getty and login/, /--init distro/, /--ssh-key/, /leave --password out/])
        expect(e.hint).toMatch(way);
    }
  });
  it('is not refused where no console is given (a workload, the image’s own init), nor before the image has been read', () => {
    expect(decideInit(p(['/app'], []), true, none)).toMatchObject({ mode: 'workload', login: false });
    expect(decideInit(p([], ['/sbin/init']), true, none)).toMatchObject({ mode: 'init' });
    expect(decideInit(p([], []), true, undefined)).toMatchObject({ mode: 'console' });
    // without --password the root shell is what the user asked for
    expect(decideInit(p([], []), false, none)).toMatchObject({ mode: 'console', login: false });
  });
  it('is refused by the plan once the flattened tree shows the image lacks them', () => {
    const o = parseConvertOptions({
      image: 'oci-archive:/x/busybox.tar',
      output: '/out/d.qcow2',
      init: 'img2vm',
      password: 'pw',
      seed: 's',
    });
    const facts: FlatFacts = {
      os: null,
      process: p([], ['/bin/sh']),
      content: { blocks4k: 10, entries: 3, bytes: 4096, files: 2 },
    };
    expect(() => plan(o, known(facts), createRandom('s'))).not.toThrow();
    const lacking = { ...facts, userland: probeUserlandInTree(busybox(['/bin/sh'])) };
    expect(refusal(() => plan(o, known(lacking), createRandom('s'))).message).toMatch(/--password/);
    const having = { ...facts, userland: probeUserlandInTree(busybox(['/bin/sh', '/sbin/getty', '/bin/login'])) };
    expect(plan(o, known(having), createRandom('s')).guest.init).toMatchObject({ mode: 'console', login: true });
  });
});
