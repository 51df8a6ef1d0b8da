// `img2vm cache ls | prune | rm` on fake cache directories, a private Docker daemon and a private podman storage (so no one else's images are touched).
import { execa, execaSync, type ResultPromise } from 'execa';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isStale, parseAge } from '../../src/cache/index.js';
import { ago } from '../../src/cli/cache.js';
import { hostTag } from '../../src/core/leftovers.js';
import { img2vm, sh } from './helpers.js';

const OLD = new Date(Date.now() - 40 * 86400_000);
const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const KEY_OLD = hex('old');
const KEY_HELD = hex('held');
const KEY_BROKEN = hex('broken');
const KEY_NEW = hex('new');
const BLOB_OLD = hex('blob-old');
const BLOB_NEW = hex('blob-new');
const KERNEL_OLD = `sha256-${hex('kernel-old')}`;
const KERNEL_NEW = `sha256-${hex('kernel-new')}`;
/** The name the store gives a file of a live process of this host (a holder, a draft): kind, key, owner, nonce. */
const owned = (kind: string, name: string) => `${kind}.${name}.${process.pid}.${hostTag()}.abcdefabcdef`;

let tmp: string;
let xdg: string;
let env: Record<string, string>;
let dockerd: ResultPromise | undefined;

/** A docker-archive with one tiny layer and the given creation time, tagged `tag`. */
function dockerArchive(dest: string, tag: string, created: Date, labels: Record<string, string> = {}): void {
  const d = mkdtempSync(join(tmp, 'arc-'));
  writeFileSync(join(d, 'x'), tag);
  execaSync('tar', ['-C', d, '-cf', join(d, 'layer.tar'), 'x']);
  rmSync(join(d, 'x'));
  const layer = readFileSync(join(d, 'layer.tar'));
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    created: created.toISOString(),
    config: { Labels: labels },
    rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(layer).digest('hex')}`] },
  });
  const c = createHash('sha256').update(config).digest('hex');
  writeFileSync(join(d, `${c}.json`), config);
  writeFileSync(
    join(d, 'manifest.json'),
    JSON.stringify([{ Config: `${c}.json`, RepoTags: [tag], Layers: ['layer.tar'] }]),
  );
  execaSync('tar', ['-C', d, '-cf', dest, '.']);
  rmSync(d, { recursive: true, force: true });
}

function runcEntry(key: string, used: Date, complete = true): string {
  const dir = join(xdg, 'img2vm', 'builds', 'runc', key);
  mkdirSync(dir, { recursive: true });
  const layer = Buffer.alloc(4096, 1);
  writeFileSync(join(dir, 'layer.tar'), layer);
  writeFileSync(join(dir, 'config.json'), '{}');
  if (complete) {
    writeFileSync(
      join(dir, 'build.json'),
      JSON.stringify({
        format: 1,
        builder: 'runc',
        key,
        base: `sha256:${'b'.repeat(64)}`,
        template: 'debian',
        label: 'Debian GNU/Linux 12 (bookworm)',
        createdAt: used.toISOString(),
        layer: { digest: `sha256:${hex(key)}`, size: layer.length, entries: 3 },
        configDigest: `sha256:${hex('{}')}`,
      }),
    );
  }
  utimesSync(dir, used, used);
  return dir;
}

function kernelTree(name: string, version: string, used: Date): string {
  const dir = join(xdg, 'img2vm', 'kernels', 'trees', name);
  mkdirSync(join(dir, 'boot'), { recursive: true });
  writeFileSync(join(dir, 'boot', `vmlinuz-${version}`), 'kernel');
  writeFileSync(
    join(dir, 'kernel.json'),
    JSON.stringify({
      format: 1,
      id: name,
      version,
      vmlinuz: `boot/vmlinuz-${version}`,
      origin: `Debian archive (bookworm) linux-image-${version}`,
      createdAt: used.toISOString(),
      depmod: false,
      source: { kind: 'deb', path: '/x.deb', sha256: 'x', size: 1 },
      bytes: 6,
      files: 1,
    }),
  );
  utimesSync(join(dir, 'kernel.json'), used, used);
  utimesSync(join(dir, 'boot', `vmlinuz-${version}`), used, used);
  utimesSync(dir, used, used);
  return dir;
}

async function ls(): Promise<{
  entries: { kind: string; store: string; name: string; bytes: number; lastUsed: string; busy: string | null }[];
  notes: string[];
}> {
  const r = await img2vm(['cache', 'ls', '--json'], { env });
  expect(r.exitCode, r.all).toBe(0);
  return JSON.parse(r.stdout);
}

async function pruneJson(
  args: string[],
): Promise<{ removed: { name: string; freed: number }[]; kept: { name: string; why: string }[]; freed: number }> {
  const r = await img2vm(['cache', 'prune', ...args, '--json'], { env });
  expect(r.exitCode, r.all).toBe(0);
  return JSON.parse(r.stdout);
}

const names = (xs: { name: string }[]) => xs.map((x) => x.name).sort();

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'img2vm-cache-e2e-'));
  xdg = join(tmp, 'xdg');
  const sock = join(tmp, 'docker.sock');
  // A daemon of our own: prune --all must not reach anyone else's images.
  dockerd = execa(
    'dockerd',
    [
      '--bridge=none',
      '--iptables=false',
      '--ip-masq=false',
      '--ip6tables=false',
      '--data-root',
      join(tmp, 'docker'),
      '--exec-root',
      join(tmp, 'docker-exec'),
      '--pidfile',
      join(tmp, 'dockerd.pid'),
      '--host',
      `unix://${sock}`,
    ],
    { reject: false, all: true, buffer: false },
  );
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 200));
  const storage = join(tmp, 'storage.conf');
  writeFileSync(
    storage,
    `[storage]\ndriver = "vfs"\ngraphroot = "${join(tmp, 'podman', 'graph')}"\nrunroot = "${join(tmp, 'podman', 'run')}"\n`,
  );
  env = { XDG_CACHE_HOME: xdg, DOCKER_HOST: `unix://${sock}`, CONTAINERS_STORAGE_CONF: storage };
  for (let i = 0; i < 50; i++) {
    if ((await execa('docker', ['info'], { env, reject: false })).exitCode === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }

  runcEntry(KEY_OLD, OLD);
  runcEntry(KEY_HELD, OLD);
  mkdirSync(join(xdg, 'img2vm', 'holders'), { recursive: true });
  writeFileSync(join(xdg, 'img2vm', 'holders', owned('build', KEY_HELD)), '');
  runcEntry(KEY_BROKEN, OLD, false);
  runcEntry(KEY_NEW, new Date());

  const blobs = join(xdg, 'img2vm', 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  writeFileSync(join(blobs, BLOB_OLD), 'old blob');
  utimesSync(join(blobs, BLOB_OLD), OLD, OLD);
  writeFileSync(join(blobs, BLOB_NEW), 'new blob');
  mkdirSync(join(xdg, 'img2vm', 'refs'));
  writeFileSync(join(xdg, 'img2vm', 'refs', 'r1.json'), JSON.stringify({ ref: 'x', digest: `sha256:${BLOB_OLD}` }));
  writeFileSync(join(xdg, 'img2vm', 'refs', 'r2.json'), JSON.stringify({ ref: 'y', digest: `sha256:${BLOB_NEW}` }));

  kernelTree(KERNEL_OLD, '6.1.0-1-cloud-amd64', OLD);
  kernelTree(KERNEL_NEW, '6.1.0-2-cloud-amd64', new Date());
  mkdirSync(join(xdg, 'img2vm', 'kernels', 'index'), { recursive: true });
  writeFileSync(
    join(xdg, 'img2vm', 'kernels', 'index', 'k1.json'),
    JSON.stringify({
      format: 1,
      mirror: 'm',
      securityMirror: null,
      suite: 'bookworm',
      arch: 'amd64',
      tree: KERNEL_OLD,
      packageVersion: '1',
      checkedAt: OLD.toISOString(),
      releases: {},
    }),
  );

  const old = join(tmp, 'old.tar');
  dockerArchive(old, `img2vm-cache:${KEY_OLD.slice(0, 32)}`, OLD, { 'org.img2vm.template': 'debian' });
  await sh('docker', ['-H', env.DOCKER_HOST!, 'load', '-q', '-i', old]);
  const fresh = join(tmp, 'fresh.tar');
  dockerArchive(fresh, 'img2vm-source:0123456789abcdef', new Date());
  await sh('docker', ['-H', env.DOCKER_HOST!, 'load', '-q', '-i', fresh]);
  const other = join(tmp, 'other.tar');
  dockerArchive(other, 'someone-else:old', OLD);
  await sh('docker', ['-H', env.DOCKER_HOST!, 'load', '-q', '-i', other]);

  const pold = join(tmp, 'pold.tar');
  dockerArchive(pold, `img2vm-cache:${KEY_HELD.slice(0, 32)}`, OLD);
  expect((await execa('podman', ['load', '-q', '-i', pold], { env, reject: false })).exitCode).toBe(0);
  const pstamped = join(tmp, 'pstamped.tar');
  dockerArchive(pstamped, `img2vm-cache:${KEY_NEW.slice(0, 32)}`, OLD);
  expect((await execa('podman', ['load', '-q', '-i', pstamped], { env, reject: false })).exitCode).toBe(0);
  // Used just now by img2vm's podman builder, though built long ago.
  mkdirSync(join(xdg, 'img2vm', 'builds', 'podman'), { recursive: true });
  writeFileSync(join(xdg, 'img2vm', 'builds', 'podman', `cache-${KEY_NEW.slice(0, 32)}.used`), '');
}, 120_000);

afterAll(async () => {
  if (dockerd) {
    dockerd.kill('SIGTERM');
    await dockerd;
  }
  await execa('podman', ['rmi', '-a', '-f'], { env, reject: false });
  rmSync(tmp, { recursive: true, force: true });
});

describe('img2vm cache ls', () => {
  it('lists every kind of entry with its store, size and last use; nothing of anyone else', async () => {
    const { entries, notes } = await ls();
    expect(notes).toEqual([]);
    const by = Object.fromEntries(entries.map((e) => [e.name, e]));
    expect(names(entries)).toEqual(
      [
        `runc:${KEY_OLD.slice(0, 32)}`,
        `runc:${KEY_HELD.slice(0, 32)}`,
        `runc:${KEY_BROKEN.slice(0, 32)}`,
        `runc:${KEY_NEW.slice(0, 32)}`,
        `img2vm-cache:${KEY_OLD.slice(0, 32)}`,
        'img2vm-source:0123456789abcdef',
        `localhost/img2vm-cache:${KEY_HELD.slice(0, 32)}`,
        `localhost/img2vm-cache:${KEY_NEW.slice(0, 32)}`,
        `sha256:${BLOB_OLD}`,
        `sha256:${BLOB_NEW}`,
        '6.1.0-1-cloud-amd64',
        '6.1.0-2-cloud-amd64',
      ].sort(),
    );
    expect(by[`runc:${KEY_OLD.slice(0, 32)}`]).toMatchObject({
      kind: 'guest-build',
      store: 'img2vm',
      busy: null,
      lastUsed: OLD.toISOString(),
    });
    expect(by[`runc:${KEY_OLD.slice(0, 32)}`]!.bytes).toBeGreaterThan(4096);
    expect(by[`runc:${KEY_HELD.slice(0, 32)}`]!.busy).toBe(`in use by img2vm process ${process.pid}`);
    expect(by[`img2vm-cache:${KEY_OLD.slice(0, 32)}`]).toMatchObject({
      kind: 'guest-build',
      store: 'docker',
      lastUsed: OLD.toISOString(),
    });
    expect(by['img2vm-source:0123456789abcdef']).toMatchObject({ kind: 'source-image', store: 'docker' });
    expect(by[`sha256:${BLOB_OLD}`]).toMatchObject({ kind: 'registry-blob', bytes: 8, lastUsed: OLD.toISOString() });
    // A kernel's size is its tree's: the 6-byte kernel image and its record.
    const record = statSync(join(xdg, 'img2vm', 'kernels', 'trees', KERNEL_OLD, 'kernel.json')).size;
    expect(by['6.1.0-1-cloud-amd64']).toMatchObject({ kind: 'kernel', bytes: 6 + record, lastUsed: OLD.toISOString() });
    expect(Date.parse(by[`localhost/img2vm-cache:${KEY_NEW.slice(0, 32)}`]!.lastUsed)).toBeGreaterThan(
      OLD.getTime() + 86400_000,
    );
  });

  it('prints a table with a total', async () => {
    const r = await img2vm(['cache', 'ls'], { env });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toMatch(/^KIND +STORE +NAME +SIZE +LAST USED$/m);
    expect(r.stdout).toMatch(/^guest build +img2vm +runc:[0-9a-f]{32} +\d+K +40 days ago$/m);
    expect(r.stdout).toMatch(/\(in use by img2vm process \d+\)/);
    expect(r.stdout).toMatch(/^12 entries, /m);
  });
});

describe('img2vm cache prune', () => {
  it('refuses an age it cannot read, with a hint', async () => {
    const r = await img2vm(['cache', 'prune', '--older-than', 'soon'], { env });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--older-than soon is not an age/);
    expect(r.stderr).toMatch(/hint: .*7d, 12h/);
  });

  it('without flags removes what was not used for 30 days, keeps what a running img2vm holds, and drops what pointed at the removed', async () => {
    const r = await pruneJson([]);
    expect(names(r.removed)).toEqual(
      [
        `runc:${KEY_OLD.slice(0, 32)}`,
        `runc:${KEY_BROKEN.slice(0, 32)}`,
        `img2vm-cache:${KEY_OLD.slice(0, 32)}`,
        `localhost/img2vm-cache:${KEY_HELD.slice(0, 32)}`,
        `sha256:${BLOB_OLD}`,
        '6.1.0-1-cloud-amd64',
      ].sort(),
    );
    expect(r.kept).toEqual([
      expect.objectContaining({
        name: `runc:${KEY_HELD.slice(0, 32)}`,
        why: `in use by img2vm process ${process.pid}`,
      }),
    ]);
    expect(r.freed).toBeGreaterThan(0);
    expect(existsSync(join(xdg, 'img2vm', 'builds', 'runc', KEY_OLD))).toBe(false);
    expect(readdirSync(join(xdg, 'img2vm', 'refs'))).toEqual(['r2.json']);
    expect(readdirSync(join(xdg, 'img2vm', 'kernels', 'index'))).toEqual([]);
    const images = (
      await sh('docker', ['-H', env.DOCKER_HOST!, 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'])
    ).stdout
      .split('\n')
      .sort();
    expect(images).toEqual(['img2vm-source:0123456789abcdef', 'someone-else:old']);
  });

  it('--older-than takes a shorter age; what is fresh stays', async () => {
    const r = await pruneJson(['--older-than', '1h']);
    expect(r.removed).toEqual([]);
    expect(names((await ls()).entries)).toHaveLength(6);
  });

  it('rm removes the entries it is given by name or a unique start, refuses unknown or ambiguous names, keeps a held one', async () => {
    const key = hex('rm-me');
    runcEntry(key, new Date());
    const unknown = await img2vm(['cache', 'rm', `runc:${key.slice(0, 12)}`, 'no-such-entry'], { env });
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/no cached entry is named no-such-entry/);
    expect(existsSync(join(xdg, 'img2vm', 'builds', 'runc', key))).toBe(true);
    const ambiguous = await img2vm(['cache', 'rm', 'runc:'], { env });
    expect(ambiguous.exitCode).toBe(2);
    expect(ambiguous.stderr).toMatch(/runc: names 3 cached entries/);
    const r = await img2vm(['cache', 'rm', `runc:${key.slice(0, 12)}`, '--json'], { env });
    expect(r.exitCode, r.all).toBe(0);
    expect(names(JSON.parse(r.stdout).removed)).toEqual([`runc:${key.slice(0, 32)}`]);
    expect(existsSync(join(xdg, 'img2vm', 'builds', 'runc', key))).toBe(false);
    const held = await img2vm(['cache', 'rm', `runc:${KEY_HELD.slice(0, 32)}`], { env });
    expect(held.exitCode).toBe(1);
    expect(held.stdout).toContain(`kept     guest build runc:${KEY_HELD.slice(0, 32)}: in use by img2vm process`);
    expect(existsSync(join(xdg, 'img2vm', 'builds', 'runc', KEY_HELD))).toBe(true);
  });

  it('--all removes everything but what is held, also while a kernel fetch or a pull runs only those wait', async () => {
    const lock = join(xdg, 'img2vm', 'locks', 'kernel.index-k1.lock');
    mkdirSync(join(xdg, 'img2vm', 'locks'), { recursive: true });
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), nonce: 'n' }));
    const partial = join(xdg, 'img2vm', 'tmp', owned('blob', hex('x')));
    mkdirSync(partial, { recursive: true });
    writeFileSync(join(partial, 'entry'), '');
    const r = await pruneJson(['--all']);
    expect(names(r.removed)).toEqual(
      [
        `runc:${KEY_NEW.slice(0, 32)}`,
        'img2vm-source:0123456789abcdef',
        `localhost/img2vm-cache:${KEY_NEW.slice(0, 32)}`,
      ].sort(),
    );
    expect(names(r.kept)).toEqual(
      [`runc:${KEY_HELD.slice(0, 32)}`, `sha256:${BLOB_NEW}`, '6.1.0-2-cloud-amd64'].sort(),
    );
    expect(r.kept.find((k) => k.name === '6.1.0-2-cloud-amd64')!.why).toBe(
      `a kernel fetch is under way (img2vm process ${process.pid})`,
    );
    expect(r.kept.find((k) => k.name === `sha256:${BLOB_NEW}`)!.why).toBe(
      `a pull is under way (img2vm process ${process.pid})`,
    );
    rmSync(lock);
    rmSync(partial, { recursive: true });
    rmSync(join(xdg, 'img2vm', 'holders', owned('build', KEY_HELD)));
    const again = await pruneJson(['--all']);
    expect(names(again.removed)).toEqual(
      [`runc:${KEY_HELD.slice(0, 32)}`, `sha256:${BLOB_NEW}`, '6.1.0-2-cloud-amd64'].sort(),
    );
    expect((await ls()).entries).toEqual([]);
    expect(
      (await sh('docker', ['-H', env.DOCKER_HOST!, 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'])).stdout,
    ).toBe('someone-else:old');
  });
});

describe('ages', () => {
  it('parses s, m, h, d, w and refuses anything else', () => {
    expect([
      parseAge('45s'),
      parseAge('90m'),
      parseAge('12h'),
      parseAge('7d'),
      parseAge('2w'),
      parseAge('1.5h'),
    ]).toEqual([45_000, 5_400_000, 43_200_000, 604_800_000, 1_209_600_000, 5_400_000]);
    for (const bad of ['', '7', 'd', '-1d', '7y', '7 days']) expect(() => parseAge(bad)).toThrow(/is not an age/);
  });

  it('stale means last used before now minus the age (30 days by default); --all takes everything', () => {
    const now = Date.parse('2024-03-01T00:00:00Z');
    const e = (lastUsed: string) => ({
      kind: 'kernel' as const,
      store: 'img2vm' as const,
      name: 'k',
      detail: '',
      bytes: 1,
      busy: null,
      location: '/',
      lastUsed,
    });
    expect(isStale(e('2024-01-30T23:59:59Z'), { now })).toBe(true);
    expect(isStale(e('2024-01-31T00:00:01Z'), { now })).toBe(false);
    expect(isStale(e('2024-02-29T11:00:00Z'), { now, olderThan: parseAge('12h') })).toBe(true);
    expect(isStale(e('2024-02-29T13:00:00Z'), { now, olderThan: parseAge('12h') })).toBe(false);
    expect(isStale(e('2024-02-29T23:59:59Z'), { now, all: true })).toBe(true);
  });

  it('says how long ago in the unit a person would', () => {
    const now = Date.parse('2024-03-01T00:00:00Z');
    expect(ago('2024-02-29T23:59:30Z', now)).toBe('30 seconds ago');
    expect(ago('2024-02-29T23:00:00Z', now)).toBe('60 minutes ago');
    expect(ago('2024-02-29T00:00:00Z', now)).toBe('24 hours ago');
    expect(ago('2024-01-21T00:00:00Z', now)).toBe('40 days ago');
  });
});
