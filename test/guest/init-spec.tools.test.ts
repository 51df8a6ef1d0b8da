// The init spec: golden renders, escaping, and the C side (native/init's tool mode) reading exactly what TS wrote, refusing the rest.
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { escapeSpecValue, renderInitSpec, type InitSpec } from '../../src/guest/init-spec.js';

const REPO = join(import.meta.dirname, '..', '..');
const INIT = join(REPO, 'native', 'init');
const GOLDEN = join(import.meta.dirname, 'golden');
const update = process.env.UPDATE_GOLDEN === '1';
const UUID = '0f3b1a52-94c4-4d8e-a4e9-2c6bb8e0a7d1';
let work: string;

beforeAll(async () => {
  const r = await execa('bash', [join(REPO, 'scripts', 'build-native.sh')], { reject: false, all: true });
  expect(r.exitCode, `scripts/build-native.sh failed (needs musl-tools or gcc):\n${r.all}`).toBe(0);
  work = mkdtempSync(join(tmpdir(), 'img2vm-spec-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const FULL: InitSpec = {
  mode: 'workload',
  root: { uuid: UUID.toUpperCase(), options: ['rw', 'noatime', 'errors=remount-ro'], waitSeconds: 12 },
  hostname: 'web-1',
  argv: ['/usr/bin/env', 'say "hi"\tthere', 'back\\slash', 'new\nline', 'grüße', ''],
  env: ['PATH=/usr/bin:/bin', 'EMPTY=', 'EQ=a=b'],
  cwd: '/srv/app',
  user: 'www-data:www-data',
  modules: ['/img2vm/modules/virtio_blk.ko', '/img2vm/modules/virtio_net.ko.xz'],
  optionalModules: ['/img2vm/modules/virtio_net.ko.xz'],
  dns: ['10.0.2.3', 'fd00::3'],
  tmp: 'image',
};

/** --entrypoint-service: the image's command, Env, WorkingDir and User as the service; a login on the console. */
const SERVICE: InitSpec = {
  mode: 'console',
  root: { uuid: UUID },
  login: true,
  service: ['/usr/local/bin/app', '--listen', ':8080', 'two words\n'],
  env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'APP_MODE=vm'],
  cwd: '/srv',
  user: 'app:app',
};

function golden(name: string, bytes: Buffer): void {
  const file = join(GOLDEN, name);
  if (update) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, bytes);
  }
  expect(bytes.toString('latin1')).toBe(readFileSync(file).toString('latin1'));
}

/** Runs native/init --check-spec on bytes; resolves with its exit code, parsed stdout and stderr. */
async function checkSpec(bytes: Buffer | string) {
  const f = join(work, `spec-${Math.random().toString(36).slice(2)}`);
  writeFileSync(f, bytes);
  const r = await execa(INIT, ['--check-spec', f], { reject: false, encoding: 'latin1' });
  return {
    code: r.exitCode,
    json: r.exitCode === 0 ? JSON.parse(r.stdout) : undefined,
    stderr: r.stderr.replace(f, 'SPEC'),
  };
}

describe('renderInitSpec', () => {
  it('renders every field in a fixed order, escaped (golden)', () => {
    golden('init-spec-full.txt', renderInitSpec(FULL));
  });

  it('renders the defaults of a minimal console spec (golden)', () => {
    golden('init-spec-console.txt', renderInitSpec({ mode: 'console', root: { uuid: UUID }, login: true }));
  });

  it('renders a console with the service beside it: its argv after the console command, env, cwd, user shared (golden)', () => {
    golden('init-spec-service.txt', renderInitSpec(SERVICE));
  });

  it('escapes backslash, newline, control bytes and everything beyond ASCII, and nothing else', () => {
    expect(escapeSpecValue('a b~!', 'x')).toBe('a b~!');
    expect(escapeSpecValue('\\\n\t\x7f\x1b', 'x')).toBe('\\\\\\n\\x09\\x7f\\x1b');
    expect(escapeSpecValue('é', 'x')).toBe('\\xc3\\xa9');
  });

  it('refuses what the init could not take, with the kind of error the user can act on', () => {
    const bad = (s: Partial<InitSpec>, kind: string, msg: RegExp) => {
      let err: unknown;
      try {
        renderInitSpec({ mode: 'workload', root: { uuid: UUID }, argv: ['/x'], ...s });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(Img2vmError);
      expect((err as Img2vmError).kind).toBe(kind);
      expect((err as Img2vmError).message).toMatch(msg);
    };
    bad({ argv: ['/bin/sh', 'a\0b'] }, 'badImage', /argument 1 of the command contains a NUL byte/);
    bad({ env: ['NOVALUE'] }, 'badImage', /not NAME=VALUE/);
    bad({ argv: [] }, 'badImage', /neither ENTRYPOINT nor CMD/);
    bad({ mode: 'console', service: ['', 'x'] }, 'badImage', /starts with an empty program name/);
    bad({ mode: 'console', service: ['/app', 'a\0b'] }, 'badImage', /argument 1 of the service contains a NUL byte/);
    // only the console mode has a service: anything else is a bug in img2vm, not the user's doing
    expect(() => renderInitSpec({ mode: 'workload', root: { uuid: UUID }, argv: ['/x'], service: ['/y'] })).toThrow(
      /a service is for mode console, not workload/,
    );
    bad({ hostname: 'bad_name!' }, 'usage', /hostname "bad_name!" is not valid/);
    bad({ dns: ['dns.example'] }, 'usage', /not an IP address/);
    bad({ root: { uuid: UUID, waitSeconds: 5000 } }, 'usage', /root wait/);
    bad({ root: { uuid: UUID, options: ['rw,ro'] } }, 'usage', /mount option/);
    expect(() => renderInitSpec({ mode: 'init', root: { uuid: 'nope' } })).toThrow(/not a UUID/);
    expect(() =>
      renderInitSpec({ mode: 'init', root: { uuid: UUID }, modules: ['/m/a.ko'], optionalModules: ['/m/b.ko'] }),
    ).toThrow(/optional module "\/m\/b.ko" is not among the modules/);
  });

  it('gives a relative WorkingDir from / and an empty one as /', () => {
    expect(renderInitSpec({ mode: 'console', root: { uuid: UUID }, cwd: 'app' }).toString()).toContain('\ncwd /app\n');
    expect(renderInitSpec({ mode: 'console', root: { uuid: UUID }, cwd: '' }).toString()).toContain('\ncwd /\n');
  });
});

describe('native/init reads the spec', () => {
  it('gets back exactly what was rendered, every byte but NUL included', async () => {
    const all = Buffer.from(Array.from({ length: 255 }, (_, i) => i + 1)).toString('latin1');
    // A JS string of latin1 characters becomes UTF-8 in the spec; the init must hand back those UTF-8 bytes.
    const weird = Buffer.from(all, 'utf8').toString('latin1');
    const r = await checkSpec(renderInitSpec({ ...FULL, argv: [...FULL.argv!, all] }));
    expect(r.stderr).toBe('');
    const utf8 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
    expect(r.json).toEqual({
      mode: 'workload',
      rootUuid: UUID,
      luksUuid: null,
      rootFstype: 'ext4',
      rootOptions: 'rw,noatime,errors=remount-ro',
      rootWait: 12,
      hostname: 'web-1',
      argv: [...FULL.argv!.map(utf8), weird],
      service: [],
      env: FULL.env,
      cwd: '/srv/app',
      user: 'www-data:www-data',
      login: false,
      modules: FULL.modules,
      optionalModules: FULL.optionalModules,
      net: 'auto',
      dns: FULL.dns,
      tmp: 'image',
    });
  });

  it('applies its defaults to a minimal spec', async () => {
    const r = await checkSpec(`img2vm-init 4\nmode init\nroot-uuid ${UUID}\nend\n`);
    expect(r.json).toMatchObject({
      mode: 'init',
      rootFstype: 'ext4',
      rootOptions: 'rw',
      rootWait: 30,
      hostname: null,
      argv: [],
      service: [],
      cwd: '/',
      user: '',
      login: false,
      net: 'auto',
      tmp: 'tmpfs',
    });
  });

  it('gets back the LUKS2 volume the root is in (its UUID only), none when the root is clear', async () => {
    const LUKS = '6C1D2F3E-4B5A-4C7D-8E9F-0A1B2C3D4E5F';
    const spec = renderInitSpec({ mode: 'init', root: { uuid: UUID, luksUuid: LUKS } });
    expect(spec.toString()).toContain(`\nluks-uuid ${LUKS.toLowerCase()}\n`);
    const r = await checkSpec(spec);
    expect(r.stderr).toBe('');
    expect(r.json).toMatchObject({ rootUuid: UUID, luksUuid: LUKS.toLowerCase() });
    expect((await checkSpec(renderInitSpec({ mode: 'init', root: { uuid: UUID } }))).json).toMatchObject({
      luksUuid: null,
    });
    expect(() => renderInitSpec({ mode: 'init', root: { uuid: UUID, luksUuid: 'x' } })).toThrow(/LUKS UUID "x"/);
  });

  it('gets back the service, in order, beside an empty console command and the shared env, cwd and user', async () => {
    const r = await checkSpec(renderInitSpec(SERVICE));
    expect(r.stderr).toBe('');
    expect(r.json).toMatchObject({
      mode: 'console',
      argv: [],
      service: SERVICE.service,
      env: SERVICE.env,
      cwd: '/srv',
      user: 'app:app',
      login: true,
    });
  });

  const head = `img2vm-init 4\nmode workload\nroot-uuid ${UUID}\narg /x\n`;
  const refused: Array<[string, string, RegExp]> = [
    ['a newer version', `img2vm-init 5\nmode init\nend\n`, /line 1: spec version 5, this init reads version 4 only/],
    // version 2 had no luks-uuid; an init and its spec ship together, so an old spec is a stale build
    ['an older version', `img2vm-init 2\nmode init\nend\n`, /line 1: spec version 2, this init reads version 4 only/],
    ['another file', `#!/bin/sh\nend\n`, /line 1: not an img2vm init spec/],
    ['a malformed version', `img2vm-init 3.0\nend\n`, /line 1: malformed version/],
    ['an unknown key', `${head}color blue\nend\n`, /line 5: unknown key "color"/],
    ['a malformed key', `${head}Mode! x\nend\n`, /line 5: malformed key/],
    ['a line without value', `${head}cwd\nend\n`, /line 5: malformed line/],
    ['a repeated single key', `${head}cwd /a\ncwd /b\nend\n`, /line 6: "cwd" given twice/],
    ['an unknown escape', `${head}arg a\\tb\nend\n`, /line 5: arg: unknown escape/],
    ['a short \\x escape', `${head}arg a\\x4\nend\n`, /line 5: arg: \\x needs two hex digits/],
    ['an escaped NUL', `${head}arg a\\x00b\nend\n`, /line 5: arg: NUL byte/],
    ['a raw control byte', `${head}arg a\tb\nend\n`, /line 5: arg: raw control byte/],
    ['a raw NUL', `${head}arg a\0b\nend\n`, /contains a NUL byte/],
    ['a missing end', `${head}`, /no "end" line \(truncated\?\)/],
    ['a missing final newline', `${head}end`, /does not end with a newline/],
    ['text after end', `${head}end\narg /y\n`, /line 6: text after "end"/],
    ['no mode', `img2vm-init 4\nroot-uuid ${UUID}\nend\n`, /no mode/],
    ['no root', `img2vm-init 4\nmode init\nend\n`, /no root-uuid/],
    [
      'a workload without command',
      `img2vm-init 4\nmode workload\nroot-uuid ${UUID}\nend\n`,
      /mode workload needs at least one arg/,
    ],
    ['a service beside a workload', `${head}service /y\nend\n`, /service is for mode console only/],
    [
      'a service beside an init',
      `img2vm-init 4\nmode init\nroot-uuid ${UUID}\nservice /y\nend\n`,
      /service is for mode console only/,
    ],
    [
      'a service with an empty program',
      `img2vm-init 4\nmode console\nroot-uuid ${UUID}\nservice \nservice x\nend\n`,
      /the service's program \(its first service line\) is empty/,
    ],
    [
      'a service with a bad escape',
      `img2vm-init 4\nmode console\nroot-uuid ${UUID}\nservice a\\qb\nend\n`,
      /line 4: service: unknown escape/,
    ],
    ['a bad mode', `img2vm-init 4\nmode daemon\nend\n`, /line 2: mode must be init, workload or console/],
    ['a bad UUID', `img2vm-init 4\nroot-uuid 1234\nend\n`, /line 2: root-uuid "1234" is not a UUID/],
    ['a bad LUKS UUID', `${head}luks-uuid LUKS\nend\n`, /line 5: luks-uuid "LUKS" is not a UUID/],
    ['a second LUKS UUID', `${head}luks-uuid ${UUID}\nluks-uuid ${UUID}\nend\n`, /line 6: "luks-uuid" given twice/],
    ['a relative module', `${head}module virtio.ko\nend\n`, /line 5: module must be an absolute path/],
    [
      'a relative optional module',
      `${head}module-optional aes.ko\nend\n`,
      /line 5: module-optional must be an absolute path/,
    ],
    ['a bad wait', `${head}root-wait -1\nend\n`, /line 5: root-wait must be seconds/],
    ['an env without =', `${head}env FOO\nend\n`, /line 5: env must be NAME=VALUE/],
    ['a bad DNS address', `${head}dns 1.2.3\nend\n`, /line 5: dns must be an IP address/],
    ['an empty file', ``, /does not end with a newline/],
  ];
  for (const [what, text, msg] of refused) {
    it(`refuses ${what} with a fatal message`, async () => {
      const r = await checkSpec(text);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^img2vm-init: fatal: spec SPEC: /);
      expect(r.stderr).toMatch(msg);
    });
  }
});

describe("native/init relays the service's output", () => {
  const relay = async (input: Buffer | string, prefix = 'service| ') => {
    const r = await execa(INIT, ['--relay', prefix], {
      input,
      reject: false,
      encoding: 'buffer',
      stripFinalNewline: false,
    });
    return { code: r.exitCode, out: Buffer.from(r.stdout).toString('latin1') };
  };
  it('puts the prefix before every line, empty ones included, and ends at end of input', async () => {
    expect(await relay('one\n\ntwo\n')).toEqual({ code: 0, out: 'service| one\nservice| \nservice| two\n' });
    expect(await relay('')).toEqual({ code: 0, out: '' });
  });
  it('passes a last line without newline, any byte and long lines through untouched', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 10));
    const long = 'x'.repeat(100_000);
    const r = await relay(Buffer.concat([Buffer.from(`${long}\n`), bytes]), '> ');
    expect(r.code).toBe(0);
    expect(r.out).toBe(`> ${long}\n> ${bytes.toString('latin1')}`);
  });
  it('keeps every byte of many short lines (the output buffer fills and flushes mid-chunk)', async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => String(i));
    const r = await relay(lines.join('\n') + '\n', 'a-long-prefix-for-the-service| ');
    expect(r.out).toBe(lines.map((l) => `a-long-prefix-for-the-service| ${l}\n`).join(''));
  });
  it('outlives SIGTERM (the shutdown) so the last words still arrive, and ends when its input does', async () => {
    const p = execa(INIT, ['--relay', 'svc| '], { reject: false });
    p.stdin!.write('before\n');
    await new Promise<void>((res) => p.stdout!.once('data', () => res()));
    p.kill('SIGTERM');
    p.stdin!.end('after\n');
    const r = await p;
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('svc| before\nsvc| after');
  });
});

describe("native/init's restart policy for the service", () => {
  const policy = async (...ends: string[]) => (await execa(INIT, ['--restart-policy', ...ends])).stdout.split('\n');
  it('restarts a failure after 1 s, doubling to 30 s while it keeps failing fast, and from 1 s after a run of 30 s', async () => {
    const fast = Array.from({ length: 7 }, () => 'exit=1/2');
    expect(await policy(...fast, 'exit=1/30', 'exit=1/29.9')).toEqual([
      'restart 1',
      'restart 2',
      'restart 4',
      'restart 8',
      'restart 16',
      'restart 30',
      'restart 30',
      'restart 1',
      'restart 2',
    ]);
  });
  it('takes status 0 and SIGHUP, SIGINT, SIGTERM, SIGPIPE as final (kill PID stops it), any other end as a failure', async () => {
    expect(await policy('exit=0/0', 'signal=1/0', 'signal=2/0', 'signal=15/0', 'signal=13/0')).toEqual([
      'final',
      'final',
      'final',
      'final',
      'final',
    ]);
    expect(await policy('signal=9/0', 'signal=11/0', 'exit=127/0', 'exit=126/0', 'signal=6/0')).toEqual([
      'restart 1',
      'restart 2',
      'restart 4',
      'restart 8',
      'restart 16',
    ]);
  });
  it('refuses malformed ends', async () => {
    for (const bad of ['exit=1', 'exit=x/1', 'stop=1/1', 'exit=256/1']) {
      const r = await execa(INIT, ['--restart-policy', bad], { reject: false });
      expect(r.exitCode, bad).toBe(1);
      expect(r.stderr).toMatch(/usage: --restart-policy/);
    }
  });
});

describe('native/init resolves User through the image files', () => {
  let root: string;
  beforeAll(() => {
    root = join(work, 'root');
    mkdirSync(join(root, 'etc'), { recursive: true });
    const long = `x${'y'.repeat(5000)}:x:7:7::/:/bin/sh`;
    writeFileSync(
      join(root, 'etc', 'passwd'),
      [
        'root:x:0:0:root:/root:/bin/bash',
        'broken line',
        long,
        'bad:x:NaN:1::/:/bin/sh',
        'alice:x:1000:1000:Alice:/home/alice:/bin/zsh',
        'svc:x:999:999::/var/lib/svc:/usr/sbin/nologin',
        'nohome:x:1001:1001:::',
      ].join('\n'),
    );
    writeFileSync(
      join(root, 'etc', 'group'),
      [
        'root:x:0:',
        'staff:x:50:alice,svc',
        'alice:x:1000:',
        'audio:x:29:bob,alice',
        'svc:x:999:',
        'weird:x:abc:alice',
      ].join('\n') + '\n',
    );
  });
  const cases: Array<[string, object]> = [
    ['', { uid: 0, gid: 0, groups: [0], name: 'root', home: '/root', shell: '/bin/bash' }],
    ['alice', { uid: 1000, gid: 1000, groups: [1000, 50, 29], name: 'alice', home: '/home/alice', shell: '/bin/zsh' }],
    ['alice:staff', { uid: 1000, gid: 50, groups: [50, 29], name: 'alice' }],
    ['alice:5', { uid: 1000, gid: 5, groups: [5, 50, 29] }],
    ['1000', { uid: 1000, gid: 1000, name: 'alice', home: '/home/alice' }],
    ['1000:1000', { uid: 1000, gid: 1000, groups: [1000, 50, 29] }],
    ['4242', { uid: 4242, gid: 0, groups: [0], name: '', home: '/' }],
    ['4242:77', { uid: 4242, gid: 77, groups: [77], home: '/' }],
    ['nohome', { uid: 1001, gid: 1001, home: '/' }],
  ];
  for (const [user, expected] of cases) {
    it(`"${user}"`, async () => {
      const r = await execa(INIT, ['--resolve-user', root, user], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject(expected);
    });
  }
  it('refuses names the image does not have', async () => {
    for (const [user, msg] of [
      ['bob', /no user "bob" in the image's \/etc\/passwd/],
      ['alice:wheel', /no group "wheel" in the image's \/etc\/group/],
    ] as const) {
      const r = await execa(INIT, ['--resolve-user', root, user], { reject: false });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(msg);
    }
  });
  it('refuses a name without any passwd file (scratch images), but takes numbers', async () => {
    const empty = join(work, 'scratch');
    mkdirSync(empty, { recursive: true });
    expect((await execa(INIT, ['--resolve-user', empty, 'nobody'], { reject: false })).exitCode).toBe(1);
    const r = await execa(INIT, ['--resolve-user', empty, '65534:65534'], { reject: false });
    expect(JSON.parse(r.stdout)).toMatchObject({ uid: 65534, gid: 65534, home: '/' });
  });
});

describe('native/init reads the kernel command line', () => {
  const parse = async (text: string) => JSON.parse((await execa(INIT, ['--parse-cmdline', text])).stdout);
  it('takes a Firecracker-style static ip= and the img2vm.* parameters, ignoring the rest', async () => {
    expect(
      await parse(
        'console=ttyS0 reboot=k ip=172.16.0.2::172.16.0.1:255.255.255.0::eth0:off:8.8.8.8 img2vm.halt=reboot img2vm.rootwait=5 root=/dev/vda',
      ),
    ).toEqual({
      halt: 'reboot',
      rootWait: 5,
      dhcpTimeout: 10,
      hostname: '',
      ip: {
        present: 1,
        off: 0,
        dhcp: 0,
        client: '172.16.0.2',
        gateway: '172.16.0.1',
        netmask: '255.255.255.0',
        host: '',
        iface: 'eth0',
        dns: ['8.8.8.8', '0.0.0.0'],
      },
    });
  });
  it('defaults to power-off, DHCP and no ip=', async () => {
    expect(await parse('quiet')).toMatchObject({ halt: 'poweroff', rootWait: -1, ip: { present: 0, off: 0, dhcp: 0 } });
  });
  it('knows ip=dhcp, ip=off, prefix lengths, classful defaults and quoted values', async () => {
    expect((await parse('ip=dhcp')).ip).toMatchObject({ present: 1, dhcp: 1, off: 0 });
    expect((await parse('ip=off')).ip).toMatchObject({ present: 1, off: 1 });
    expect((await parse('ip=10.1.2.3::10.1.2.1:16:vm:eth1:none')).ip).toMatchObject({
      client: '10.1.2.3',
      netmask: '255.255.0.0',
      host: 'vm',
      iface: 'eth1',
      dhcp: 0,
    });
    expect((await parse('ip=192.168.7.9')).ip).toMatchObject({
      client: '192.168.7.9',
      netmask: '255.255.255.0',
      dhcp: 0,
    });
    expect((await parse('"img2vm.hostname=a b" img2vm.dhcp_timeout=3')).hostname).toBe('a b');
  });
  it('ignores malformed values with a warning instead of guessing', async () => {
    const r = await execa(INIT, [
      '--parse-cmdline',
      'ip=1.2.3.4.5::: img2vm.halt=explode img2vm.rootwait=9999 img2vm.nosuch=1',
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ halt: 'poweroff', rootWait: -1, ip: { present: 0 } });
    expect(r.stderr).toMatch(/ignoring malformed ip=/);
    expect(r.stderr).toMatch(/ignoring img2vm.halt=explode/);
    expect(r.stderr).toMatch(/ignoring img2vm.rootwait=9999/);
    expect(r.stderr).toMatch(/ignoring unknown kernel parameter img2vm.nosuch/);
  });
});

describe("native/init finds img2vm test's boot nonce, to repeat it in its nonce line", () => {
  const NONCE = '7a'.repeat(16);
  const oem = (...strings: string[]) =>
    Buffer.concat([
      Buffer.from([11, 5, 0x0b, 0x00, strings.length]),
      ...strings.map((s) => Buffer.from(`${s}\0`)),
      Buffer.from([0]),
    ]);
  const dmi = (entries: Record<string, Buffer>) => {
    const dir = mkdtempSync(join(work, 'dmi-'));
    for (const [name, raw] of Object.entries(entries)) {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'raw'), raw);
    }
    return dir;
  };
  const find = async (dir: string, cmdline = 'console=ttyS0 quiet') => {
    const r = await execa(INIT, ['--boot-nonce', dir, cmdline]);
    expect(r.stderr).toBe('');
    return r.stdout;
  };

  it('in an SMBIOS OEM string (type 11), whichever entry and position holds it', async () => {
    expect(
      await find(
        dmi({
          '1-0': oem(`img2vm.nonce=${'0'.repeat(32)}`),
          '11-0': oem('vendor'),
          '11-1': oem('x', `img2vm.nonce=${NONCE}`),
        }),
      ),
    ).toBe(NONCE);
  });

  it('else on the kernel command line (direct-kernel boots), without a warning about the parameter', async () => {
    expect(await find(dmi({}), `console=ttyS0 img2vm.nonce=${NONCE} quiet`)).toBe(NONCE);
    expect(await find(join(work, 'no-such-dir'), `img2vm.nonce=${NONCE}`)).toBe(NONCE);
  });

  it('"none" without one, or for anything but 16 to 64 lowercase hex digits; never past the structure', async () => {
    expect(await find(dmi({}))).toBe('none');
    for (const bad of ['abc', NONCE.toUpperCase(), `${NONCE} x`, 'a'.repeat(65)]) {
      expect(await find(dmi({ '11-0': oem(`img2vm.nonce=${bad}`) }), `"img2vm.nonce=${bad}"`), bad).toBe('none');
    }
    // Cut short (no NUL at the end), or a header length past the end.
    expect(
      await find(
        dmi({
          '11-0': Buffer.from([11, 5, 0, 0, 1, ...Buffer.from(`img2vm.nonce=${NONCE}`)]),
          '11-1': Buffer.from([11, 200, 0]),
        }),
      ),
    ).toBe(NONCE);
    expect(await find(dmi({ '11-0': Buffer.from([11, 200, 0, 0]) }))).toBe('none');
  });
});

describe('native/init parses DHCP replies from the network defensively', () => {
  const MAC = '52:54:00:12:34:56';
  const XID = 0x1badcafe;
  /** An IPv4/UDP/BOOTP reply as QEMU's user network sends it, with the given options. */
  function reply(options: number[], xid = XID): Buffer {
    const bootp = Buffer.alloc(236);
    bootp[0] = 2;
    bootp[1] = 1;
    bootp[2] = 6;
    bootp.writeUInt32BE(xid, 4);
    Buffer.from([10, 0, 2, 15]).copy(bootp, 16);
    Buffer.from(MAC.split(':').map((h) => Number.parseInt(h, 16))).copy(bootp, 28);
    const body = Buffer.concat([bootp, Buffer.from([99, 130, 83, 99, ...options])]);
    const udp = Buffer.alloc(8);
    udp.writeUInt16BE(67, 0);
    udp.writeUInt16BE(68, 2);
    udp.writeUInt16BE(8 + body.length, 4);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(28 + body.length, 2);
    ip[9] = 17;
    return Buffer.concat([ip, udp, body]);
  }
  const OFFER = [
    53, 1, 2, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2, 6, 8, 10, 0, 2, 3, 1, 1, 1, 1, 54, 4, 10, 0, 2, 2, 26, 2, 5,
    220, 255,
  ];
  async function parse(pkt: Buffer, xid = XID) {
    const f = join(work, `dhcp-${Math.random().toString(36).slice(2)}`);
    writeFileSync(f, pkt);
    return execa(INIT, ['--parse-dhcp', f, xid.toString(16), MAC], { reject: false });
  }

  it('takes the lease, mask, router, name servers, server id and MTU of an offer', async () => {
    const r = await parse(reply(OFFER));
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      type: 2,
      addr: '10.0.2.15',
      mask: '255.255.255.0',
      router: '10.0.2.2',
      server: '10.0.2.2',
      mtu: 1500,
      dns: ['10.0.2.3', '1.1.1.1', '0.0.0.0'],
      ndns: 2,
    });
  });

  it('ignores replies to another transaction, and packets that are not replies', async () => {
    expect((await parse(reply(OFFER, 0x12345678))).exitCode).toBe(1);
    expect((await parse(reply([255]))).exitCode).toBe(1); // no message type
  });

  it('refuses every truncation and an option running past the end, without crashing', async () => {
    const full = reply(OFFER);
    for (const cut of [0, 10, 19, 20, 27, 28, 100, 263, 267, full.length - 30, full.length - 1]) {
      const r = await parse(full.subarray(0, cut));
      expect(r.exitCode, `cut at ${cut}`).toBe(1);
      expect(r.stderr).toMatch(/not a DHCP reply/);
    }
    const overrun = reply([53, 1, 2, 6, 200, 10, 0, 2, 3]);
    expect((await parse(overrun)).exitCode).toBe(1);
  });
});
