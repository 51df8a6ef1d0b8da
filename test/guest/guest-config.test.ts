// Guest configuration as data: build-time values, per-conversion files, SSH keys, the entrypoint service, accounts (Alpine's launcher run for real in guest-config.tools.test.ts).
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { createRandom } from '../../src/core/random.js';
import { sha512Crypt } from '../../src/guest/credentials.js';
import { parseOsRelease } from '../../src/guest/detect.js';
import { recipeFor } from '../../src/guest/distros.js';
import {
  applyEdits,
  buildFeatures,
  buildValues,
  guestFiles,
  type CurrentFile,
  type GuestOptions,
} from '../../src/guest/guest-config.js';
import type { ImageConfig } from '../../src/source/image.js';

const debian = recipeFor(parseOsRelease('ID=debian\nVERSION_ID=12'), 'amd64');
const ubuntu = recipeFor(parseOsRelease('ID=ubuntu\nVERSION_ID=24.04'), 'amd64');
const alpine = recipeFor(parseOsRelease('ID=alpine\nVERSION_ID=3.20.3'), 'amd64');
const rocky = recipeFor(parseOsRelease('ID=rocky\nVERSION_ID=9.4'), 'amd64');
const ctx = () => ({ random: createRandom('guest-config-test'), epochSeconds: 86400 * 20000 });
const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvc3RpbGUtdGVzdC1rZXktMzItYnl0ZXMhISEh alice@laptop';
const key = (text = ED25519) => ({ file: 'id.pub', text });
const plan = (o: GuestOptions, r = debian, image: ImageConfig = {}) => guestFiles(r, o, image, ctx());

function usage(f: () => unknown): Img2vmError {
  try {
    f();
  } catch (e) {
    if (e instanceof Img2vmError) return e;
    throw e;
  }
  throw new Error('expected an error');
}

describe('build-time values', () => {
  it('with no option the build is the plain template', () => {
    expect(buildValues(debian, buildFeatures({}))).toEqual(debian.values);
    expect(buildFeatures({ password: 'pw', hostname: 'h', dns: ['1.1.1.1'] })).toEqual({
      ssh: false,
      sudo: false,
      cloudInit: false,
      entrypoint: false,
    });
  });
  it('installs and enables what each option needs, per distribution', () => {
    const all = { ssh: true, sudo: true, cloudInit: true, entrypoint: true };
    expect(buildValues(debian, all)).toMatchObject({
      extra_packages: 'openssh-server sudo cloud-init',
      enable_units: 'ssh.service img2vm-ssh-keygen.service',
    });
    expect(buildValues(ubuntu, all)).toMatchObject({ enable_units: 'ssh.socket img2vm-ssh-keygen.service' });
    expect(buildValues(rocky, all)).toMatchObject({
      extra_packages: 'openssh-server sudo cloud-init',
      enable_units: 'sshd.service img2vm-ssh-keygen.service',
    });
    expect(buildValues(alpine, all)).toMatchObject({
      extra_packages: 'openssh-server sudo cloud-init su-exec',
      default_services: 'img2vm-ssh-keygen sshd cloud-init cloud-config cloud-final',
      boot_services: 'cloud-init-local',
    });
  });
  it('keeps packages the caller already added (systemd-boot) and does not repeat them', () => {
    const r = { ...debian, values: { ...debian.values, extra_packages: 'systemd-boot sudo' } };
    expect(buildValues(r, { ssh: false, sudo: true, cloudInit: false, entrypoint: false }).extra_packages).toBe(
      'systemd-boot sudo',
    );
  });
  it('no password or key ever reaches the cached build, so builds are shared across them', () => {
    const a: GuestOptions = { password: 'hunter2-secret', sshKey: key(), user: 'alice' };
    const b: GuestOptions = { password: 'other', sshKey: key('ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB other'), user: 'bob' };
    const va = buildValues(debian, buildFeatures(a));
    expect(va).toEqual(buildValues(debian, buildFeatures(b)));
    expect(JSON.stringify(va)).not.toMatch(/hunter2|AAAAC3|alice/);
  });
});

describe('per-conversion files', () => {
  it('hostname, hosts and an empty machine-id on systemd; no machine-id on OpenRC', () => {
    const p = plan({ hostname: 'web1.example.com' });
    expect(p.files.find((f) => f.path === '/etc/hostname')).toMatchObject({
      content: 'web1.example.com\n',
      mode: 0o644,
      uid: 0,
      gid: 0,
    });
    expect(p.files.find((f) => f.path === '/etc/hosts')?.content).toMatch(/^127\.0\.1\.1\tweb1\.example\.com web1$/m);
    expect(p.files.find((f) => f.path === '/etc/machine-id')).toMatchObject({ content: '', mode: 0o444 });
    expect(plan({}, alpine).files.map((f) => f.path)).toEqual([]);
  });

  it("resolv.conf: the resolved stub with networkd, a file NetworkManager takes over, udhcpc's own otherwise", () => {
    expect(plan({}).symlinks).toEqual([
      { path: '/etc/resolv.conf', target: '../run/systemd/resolve/stub-resolv.conf' },
    ]);
    expect(plan({}, rocky).files.find((f) => f.path === '/etc/resolv.conf')?.content).toMatch(/^# Written by img2vm/);
    expect(plan({}, rocky).symlinks).toEqual([]);
    expect(plan({}, alpine).symlinks).toEqual([]);
  });

  it('refuses hostile host names', () => {
    for (const h of ['web\nevil', 'a_b', '-lead', 'trail-', '', 'x'.repeat(65), 'a..b', 'white space', 'ünïcode']) {
      const e = usage(() => plan({ hostname: h }));
      expect([e.kind, e.message]).toEqual(['usage', `invalid --hostname ${JSON.stringify(h)}`]);
    }
  });

  it('static DNS in the form each network stack reads, DHCP-offered servers ignored', () => {
    const dns = ['1.1.1.1, 8.8.8.8', '2606:4700:4700::1111', '1.1.1.1'];
    const files = (r = debian) => Object.fromEntries(plan({ dns }, r).files.map((f) => [f.path, f.content]));
    const d = files();
    expect(d['/etc/systemd/resolved.conf.d/90-img2vm-dns.conf']).toMatch(
      /^DNS=1\.1\.1\.1 8\.8\.8\.8 2606:4700:4700::1111$/m,
    );
    expect(d['/etc/systemd/network/80-img2vm-dhcp.network.d/90-img2vm-dns.conf']).toMatch(/\[DHCPv4\]\nUseDNS=no\n/);
    expect(files(rocky)['/etc/NetworkManager/conf.d/90-img2vm-dns.conf']).toMatch(
      /^\[global-dns-domain-\*\]\nservers=1\.1\.1\.1,8\.8\.8\.8,2606:4700:4700::1111$/m,
    );
    const a = files(alpine);
    expect(a['/etc/resolv.conf']).toMatch(
      /nameserver 1\.1\.1\.1\nnameserver 8\.8\.8\.8\nnameserver 2606:4700:4700::1111\n$/,
    );
    expect(a['/etc/udhcpc/udhcpc.conf']).toMatch(/^RESOLV_CONF="no"$/m);
    expect(plan({ dns: ['1.1.1.1,1.0.0.1,8.8.8.8,9.9.9.9'] }, alpine).warnings).toEqual([
      "--dns: only the first 3 of 4 servers are used by Alpine's resolver",
    ]);
    for (const bad of ['dns.example.com', '1.1.1', 'fe80::1%eth0', '1.1.1.1\nnameserver 6.6.6.6', ',']) {
      expect(usage(() => plan({ dns: [bad] })).kind, bad).toBe('usage');
    }
  });

  it('refuses invalid user names, and a user with no way to log in', () => {
    for (const u of ['Alice', '1abc', 'a b', 'al:ice', 'al\nice', 'x'.repeat(33), '', '../etc']) {
      const e = usage(() => plan({ user: u, password: 'pw' }));
      expect([e.kind, e.message]).toEqual(['usage', `invalid --user ${JSON.stringify(u)}`]);
    }
    expect(usage(() => plan({ user: 'root', password: 'pw' })).message).toMatch(/root is always there/);
    expect(usage(() => plan({ user: 'alice' })).message).toBe('--user alice needs --password or --ssh-key');
    expect(usage(() => plan({ password: '' })).message).toBe('--password is empty');
  });

  it('hashes passwords (never stores them) and drops host keys an image carries when SSH is set up', () => {
    const p = plan({ password: 'pw', user: 'alice', sshKey: key() });
    expect(JSON.stringify(p)).not.toContain('"pw"');
    const salt = p.edits.rootPasswordHash!.split('$')[2]!;
    expect(p.edits.rootPasswordHash).toBe(sha512Crypt('pw', salt));
    expect(p.edits.user?.passwordHash).toMatch(/^\$6\$/);
    expect(p.edits.user?.passwordHash).not.toBe(p.edits.rootPasswordHash);
    expect(p.edits.authorizedKeys).toBe(`${ED25519}\n`);
    expect(p.removes).toEqual([{ dir: '/etc/ssh', prefix: 'ssh_host_' }]);
    expect(plan({ password: 'pw' }).removes).toEqual([]);
  });
});

describe('--ssh-key files', () => {
  const bad: [string, string, RegExp][] = [
    [
      'a private key',
      '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
      /this is a private key/,
    ],
    ['a PEM RSA private key', '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n', /this is a private key/],
    [
      'a PuTTY export',
      '---- BEGIN SSH2 PUBLIC KEY ----\nComment: x\nAAAA\n---- END SSH2 PUBLIC KEY ----\n',
      /RFC 4716/,
    ],
    ['garbage', 'hello world\n', /line 1: not an OpenSSH public key/],
    ['a DSA key', 'ssh-dss AAAAB3NzaC1kc3MAAACBAP x\n', /DSA keys are refused/],
    [
      'options',
      'command="/bin/evil" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvc3RpbGUtdGVzdC1rZXktMzItYnl0ZXMhISEh\n',
      /options are not supported/,
    ],
    ['bad base64', 'ssh-ed25519 not*base64\n', /not base64/],
    [
      'a key under the wrong type',
      'ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGhvc3RpbGUtdGVzdC1rZXktMzItYnl0ZXMhISEh\n',
      /does not hold a ssh-rsa key/,
    ],
    ['an empty file', '\n# only a comment\n', /holds no public key/],
    ['a huge file', `${ED25519}\n`.repeat(2000), /too large/],
  ];
  for (const [name, text, message] of bad) {
    it(`refuses ${name}`, () => {
      const e = usage(() => plan({ sshKey: { file: 'k.pub', text } }));
      expect(e.kind).toBe('usage');
      expect(e.message).toMatch(/^--ssh-key k\.pub: /);
      expect(e.message).toMatch(message);
      expect(e.hint).toBeTruthy();
    });
  }
  it('takes several keys, CRLF line ends and comments, and strips control characters from comments', () => {
    const text = `# my keys\r\n${ED25519}\r\n\r\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB  bob\x1b[31m@evil\r\n`;
    expect(plan({ sshKey: { file: 'k', text } }).edits.authorizedKeys).toBe(
      `${ED25519}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB bob[31m@evil\n`,
    );
  });
});

/** The inverse of what systemd does to an ExecStart= line: split words, unquote, C-unescape, %% → %, $$ → $. */
function systemdArgv(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === ' ') i++;
    if (i >= line.length) break;
    let w = '';
    let quoted = false;
    for (; i < line.length && (quoted || line[i] !== ' '); i++) {
      const c = line[i]!;
      if (c === '"') quoted = !quoted;
      else if (c === '\\') {
        const n = line[++i]!;
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', '"': '"' };
        if (n === 'x') {
          w += String.fromCharCode(Number.parseInt(line.slice(i + 1, i + 3), 16));
          i += 2;
        } else w += simple[n] ?? `\\${n}`;
      } else w += c;
    }
    out.push(w.replace(/%%/g, '%').replace(/\$\$/g, '$'));
  }
  return out;
}

describe('--entrypoint-service', () => {
  const HOSTILE = [
    'two words',
    `it's "quoted"`,
    '$HOME ${PATH} $$',
    '100% %n%%',
    'back\\slash\\',
    'new\nline',
    ';',
    'tab\there',
    '\x07bell',
    'ünï ☃',
    '',
  ];
  const image = (c: NonNullable<ImageConfig['config']>): ImageConfig => ({ config: c });
  const unitOf = (c: NonNullable<ImageConfig['config']>, r = debian) => {
    const p = plan({ entrypointService: true }, r, image(c));
    return { p, unit: p.files.find((f) => f.path === '/etc/systemd/system/img2vm-entrypoint.service')?.content ?? '' };
  };
  const setting = (unit: string, key: string) =>
    unit
      .split('\n')
      .filter((l) => l.startsWith(`${key}=`))
      .map((l) => l.slice(key.length + 1));

  it("a unit with the argv quoted so systemd reads back exactly the image's words", () => {
    const { p, unit } = unitOf({
      Entrypoint: ['/usr/bin/app', '--flag'],
      Cmd: HOSTILE,
      WorkingDir: '/srv/app 100%',
      User: 'app:staff',
    });
    const [exec] = setting(unit, 'ExecStart');
    expect(exec).not.toContain('\n');
    expect(systemdArgv(exec!)).toEqual(['/usr/bin/app', '--flag', ...HOSTILE]);
    expect(setting(unit, 'WorkingDirectory')).toEqual(['/srv/app 100%%']);
    expect(setting(unit, 'User')).toEqual(['app']);
    expect(setting(unit, 'Group')).toEqual(['staff']);
    expect(setting(unit, 'Wants')).toEqual([]);
    expect(setting(unit, 'After')).toEqual(['network.target network-online.target']);
    expect(unit).toMatch(/^StandardOutput=journal\+console$/m);
    expect(unit).toMatch(/^StandardError=journal\+console$/m);
    expect(p.symlinks).toContainEqual({
      path: '/etc/systemd/system/multi-user.target.wants/img2vm-entrypoint.service',
      target: '/etc/systemd/system/img2vm-entrypoint.service',
    });
  });

  it("runs a bare or relative program through sh, so the image's PATH and WorkingDir find it", () => {
    const { unit } = unitOf({ Cmd: ['python3', '-m', 'http.server'] });
    expect(systemdArgv(setting(unit, 'ExecStart')[0]!)).toEqual([
      '/bin/sh',
      '-c',
      'exec "$0" "$@"',
      'python3',
      '-m',
      'http.server',
    ]);
    expect(setting(unit, 'WorkingDirectory')).toEqual(['/']);
    expect(setting(unit, 'User')).toEqual([]);
    // A path systemd would split, refuse, or resolve % or $ in becomes an argument of sh, where quoting is exact.
    for (const path of ['/opt/my "app"', '/opt/my app', '/opt/100%/app', '/opt/$HOME/app', '/opt/a\\b']) {
      expect(systemdArgv(setting(unitOf({ Cmd: [path, 'x'] }).unit, 'ExecStart')[0]!), path).toEqual([
        '/bin/sh',
        '-c',
        'exec "$0" "$@"',
        path,
        'x',
      ]);
    }
    expect(setting(unitOf({ Cmd: ['/usr/local/bin/my-app_2.0+x', 'x'] }).unit, 'ExecStart')).toEqual([
      '/usr/local/bin/my-app_2.0+x "x"',
    ]);
  });

  it('passes Env as Environment= lines, skipping what systemd cannot carry, with a warning each', () => {
    const { p, unit } = unitOf({
      Cmd: ['/bin/true'],
      Env: ['A=1', 'QUOTE=say "hi" \\ 50%', 'EMPTY=', 'MULTI=a\nb', 'bad.name=x', 'NOEQUALS', 'A=2'],
    });
    expect(setting(unit, 'Environment')).toEqual([
      '"QUOTE=say \\"hi\\" \\\\ 50%%"',
      '"EMPTY="',
      '"A=2"',
      `"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"`,
      '"HOME=/root"',
    ]);
    expect(p.warnings).toEqual([
      'the image\'s Env entry "bad.name=x" is not NAME=value with a valid name; the service does not get it',
      'the image\'s Env entry "NOEQUALS" is not NAME=value with a valid name; the service does not get it',
      "the image's Env MULTI holds control characters (a newline?); systemd cannot pass it, so the service does not get it",
    ]);
  });

  it('refuses what cannot become a service', () => {
    expect(usage(() => unitOf({})).message).toBe('--entrypoint-service: the image has no ENTRYPOINT or CMD');
    const cases: [NonNullable<ImageConfig['config']>, RegExp][] = [
      [{ Cmd: ['/bin/x'], WorkingDir: 'relative' }, /WorkingDir "relative" is not an absolute path/],
      [{ Cmd: ['/bin/x'], WorkingDir: '/a\nb' }, /WorkingDir .* control characters/],
      [{ Cmd: ['/bin/x'], User: 'a b' }, /User "a b" is not user\[:group\]/],
      [{ Cmd: ['/bin/x'], User: 'a:b:c' }, /is not user\[:group\]/],
      [{ Cmd: ['/bin/x'], User: 'x%i' }, /is not user\[:group\]/],
      [{ Cmd: ['-x'] }, /starts with "-x"/],
      [{ Cmd: ['/bin/x', 'nul\0byte'] }, /NUL/],
      [{ Cmd: ['/bin/x', '\ud800'] }, /not valid Unicode/],
      [{ Cmd: ['/bin/x', 'a'.repeat(70 * 1024)] }, /longer than/],
    ];
    for (const [c, message] of cases) {
      const e = usage(() => unitOf(c));
      expect(e.kind, JSON.stringify(c).slice(0, 80)).toBe('badImage');
      expect(e.message).toMatch(message);
    }
  });

  it("on Alpine, the image's USER is taken with su-exec", () => {
    const p = plan({ entrypointService: true }, alpine, image({ Cmd: ['/app'], User: '1000:1000' }));
    expect(p.files.find((f) => f.path === '/usr/local/lib/img2vm/entrypoint')!.content).toMatch(
      / \/sbin\/su-exec '1000:1000' '\/app'$/m,
    );
  });
});

describe("applyEdits: accounts against the image's files", () => {
  const DEBIAN_FILES: Record<string, CurrentFile> = {
    '/etc/passwd': {
      content:
        'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n',
      mode: 0o644,
      uid: 0,
      gid: 0,
    },
    '/etc/group': {
      content: 'root:x:0:\nshadow:x:42:\nsudo:x:27:ubuntu\nubuntu:x:1000:\n',
      mode: 0o644,
      uid: 0,
      gid: 0,
    },
    '/etc/shadow': {
      content: 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nubuntu:!:19000:0:99999:7:::\n',
      mode: 0o640,
      uid: 0,
      gid: 42,
    },
    '/etc/gshadow': { content: 'root:*::\nsudo:*::ubuntu\nubuntu:!::\n', mode: 0o640, uid: 0, gid: 42 },
    '/etc/shells': { content: '# /etc/shells\n/bin/sh\n/bin/bash\n', mode: 0o644, uid: 0, gid: 0 },
  };
  const readFrom = (files: Record<string, CurrentFile>) => (p: string) => files[p];
  const byPath = (r: ReturnType<typeof applyEdits>) => Object.fromEntries(r.files.map((f) => [f.path, f]));

  it('adds a sudo user with the next free id, its group, shadow entry, home, keys and sudoers rule', () => {
    const p = plan({ user: 'alice', sshKey: key() });
    const r = applyEdits(p.edits, readFrom(DEBIAN_FILES));
    const f = byPath(r);
    expect(f['/etc/passwd']!.content).toMatch(/\nalice:x:1001:1001::\/home\/alice:\/bin\/bash\n$/);
    expect(f['/etc/group']!.content).toBe(
      'root:x:0:\nshadow:x:42:\nsudo:x:27:ubuntu,alice\nubuntu:x:1000:\nalice:x:1001:\n',
    );
    expect(f['/etc/gshadow']).toMatchObject({
      content: 'root:*::\nsudo:*::ubuntu,alice\nubuntu:!::\nalice:!::\n',
      mode: 0o640,
      gid: 42,
    });
    expect(f['/etc/shadow']).toMatchObject({
      content: expect.stringMatching(/\nalice:\*:20000:0:99999:7:::\n$/),
      mode: 0o640,
      uid: 0,
      gid: 42,
    });
    expect(f['/root/.ssh/authorized_keys']).toMatchObject({ content: `${ED25519}\n`, mode: 0o600, uid: 0, gid: 0 });
    expect(f['/home/alice/.ssh/authorized_keys']).toMatchObject({
      content: `${ED25519}\n`,
      mode: 0o600,
      uid: 1001,
      gid: 1001,
    });
    // No password to give sudo, so no password to ask for.
    expect(f['/etc/sudoers.d/90-img2vm']).toMatchObject({
      content: '# Written by img2vm (--user)\nalice ALL=(ALL:ALL) NOPASSWD: ALL\n',
      mode: 0o440,
    });
    expect(r.dirs).toEqual([
      { path: '/root', mode: 0o700, uid: 0, gid: 0 },
      { path: '/root/.ssh', mode: 0o700, uid: 0, gid: 0 },
      { path: '/home', mode: 0o755, uid: 0, gid: 0 },
      { path: '/home/alice', mode: 0o750, uid: 1001, gid: 1001 },
      { path: '/home/alice/.ssh', mode: 0o700, uid: 1001, gid: 1001 },
      { path: '/etc/sudoers.d', mode: 0o750, uid: 0, gid: 0 },
    ]);
  });

  it("reuses a user the image already has, setting its password, and root's too", () => {
    const p = plan({ user: 'ubuntu', password: 'pw' });
    const f = byPath(applyEdits(p.edits, readFrom(DEBIAN_FILES)));
    expect(f['/etc/passwd']).toBeUndefined();
    const shadow = f['/etc/shadow']!.content.split('\n');
    expect(shadow[0]).toBe(`root:${p.edits.rootPasswordHash}:20000:0:99999:7:::`);
    expect(shadow[2]).toBe(`ubuntu:${p.edits.user!.passwordHash}:20000:0:99999:7:::`);
    expect(f['/etc/group']).toBeUndefined(); // already in sudo
    expect(f['/etc/sudoers.d/90-img2vm']!.content).toMatch(/^ubuntu ALL=\(ALL:ALL\) ALL$/m);
  });

  it('creates shadow the way the distribution ships it when the image has none, with sh when bash is not listed', () => {
    const files = {
      '/etc/passwd': { content: 'root:x:0:0:root:/root:/bin/sh\n', mode: 0o644, uid: 0, gid: 0 },
      '/etc/group': { content: 'root:x:0:\nwheel:x:10:root\n', mode: 0o644, uid: 0, gid: 0 },
    };
    const f = byPath(applyEdits(plan({ user: 'alice', password: 'pw' }, rocky).edits, readFrom(files)));
    expect(f['/etc/shadow']).toMatchObject({ mode: 0o000, uid: 0, gid: 0 });
    expect(f['/etc/group']!.content).toMatch(/^wheel:x:10:root,alice$/m);
    expect(f['/etc/passwd']!.content).toMatch(/^alice:x:1000:1000::\/home\/alice:\/bin\/sh$/m);
  });

  it('refuses to turn a system account or an existing group into the user, and hostile account files', () => {
    expect(
      usage(() => applyEdits(plan({ user: 'daemon', password: 'pw' }).edits, readFrom(DEBIAN_FILES))).message,
    ).toMatch(/daemon as a system account \(uid 1\)/);
    const groupClash = {
      ...DEBIAN_FILES,
      '/etc/group': { ...DEBIAN_FILES['/etc/group']!, content: 'root:x:0:\ndocker:x:999:\n' },
    };
    expect(
      usage(() => applyEdits(plan({ user: 'docker', password: 'pw' }).edits, readFrom(groupClash))).message,
    ).toMatch(/already has a group of that name/);
    const badHome = {
      ...DEBIAN_FILES,
      '/etc/passwd': { ...DEBIAN_FILES['/etc/passwd']!, content: 'root:x:0:0:root:/root/../../etc:/bin/sh\n' },
    };
    expect(usage(() => applyEdits(plan({ sshKey: key() }).edits, readFrom(badHome))).kind).toBe('badImage');
    const huge = {
      ...DEBIAN_FILES,
      '/etc/passwd': { ...DEBIAN_FILES['/etc/passwd']!, content: 'x'.repeat(9 * 1024 * 1024) },
    };
    expect(usage(() => applyEdits(plan({ password: 'pw' }).edits, readFrom(huge))).kind).toBe('badImage');
  });
});
