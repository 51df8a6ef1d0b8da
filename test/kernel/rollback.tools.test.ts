// Rollback attacks on the kernel fetch against fake signed mirrors: replayed old InRelease files, a withheld security or -updates suite, a mirror switch; each shown refused.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getKernel, kernelCacheDir, type KernelOptions } from '../../src/kernel/index.js';
import { makeTestKey, type TestKey } from '../../fixtures/debian-mirror/gpg.js';
import { fakeKernelDeb } from '../../fixtures/debian-mirror/kernel.js';
import {
  serveMirror,
  writeMirror,
  type MirrorPackage,
  type MirrorServer,
  type MirrorSuite,
} from '../../fixtures/debian-mirror/mirror.js';
import { listFiles, testEnv, type TestEnv } from './helpers.js';

const OLD = '6.12.90+deb13-cloud-amd64';
const NEW = '6.12.99+deb13-cloud-amd64';
const DAY = 24 * 3600_000;
const TRIXIE = { kind: 'debian-archive', suite: 'trixie' } as const;
/** Whole seconds: Release dates carry no more. */
const T0 = new Date(Math.floor((Date.now() - 3600_000) / 1000) * 1000);
const before = (days: number): Date => new Date(T0.getTime() - days * DAY);

let key: TestKey;
let oldDeb: Buffer;
let newDeb: Buffer;

beforeAll(async () => {
  key = await makeTestKey();
  [oldDeb, newDeb] = await Promise.all([fakeKernelDeb({ version: OLD }), fakeKernelDeb({ version: NEW })]);
});

afterAll(async () => {
  await key?.close();
});

/** The cloud metapackage and the kernel package it names. */
function kernel(which: 'old' | 'new'): MirrorPackage[] {
  const [v, abi, deb] = which === 'old' ? ['6.12.90-1', OLD, oldDeb] : ['6.12.99-1', NEW, newDeb];
  return [
    { name: 'linux-image-cloud-amd64', version: v, depends: `linux-image-${abi} (= ${v})` },
    { name: `linux-image-${abi}`, version: v, deb },
  ];
}

interface Archive {
  main?: MirrorPackage[];
  updates?: MirrorPackage[];
  /** null: the mirror has no security suite. */
  security?: MirrorPackage[] | null;
  dates?: { main?: Date; updates?: Date; security?: Date };
}

/** trixie with the old kernel; by default trixie-security with the new one, dated T0. */
function archive(a: Archive = {}): MirrorSuite[] {
  const out: MirrorSuite[] = [
    {
      archive: 'debian',
      suite: 'trixie',
      alias: 'stable',
      date: a.dates?.main ?? before(30),
      packages: a.main ?? kernel('old'),
    },
    {
      archive: 'debian',
      suite: 'trixie-updates',
      alias: 'stable-updates',
      date: a.dates?.updates ?? before(1),
      packages: a.updates ?? [],
    },
  ];
  const security = a.security === undefined ? kernel('new') : a.security;
  if (security) {
    const date = a.dates?.security ?? T0;
    // Like Debian's security suite: valid for a week after its date.
    out.push({
      archive: 'debian-security',
      suite: 'trixie-security',
      alias: 'stable-security',
      date,
      validUntil: new Date(date.getTime() + 7 * DAY),
      packages: security,
    });
  }
  return out;
}

let env: TestEnv;
const servers: MirrorServer[] = [];

beforeEach(async () => {
  env = await testEnv();
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await env.close();
});

/** A mirror in its own directory; writing the same name again changes what it serves from then on. */
async function mirror(name: string, suites: MirrorSuite[]): Promise<MirrorServer> {
  await writeMirror(join(env.dir, name), suites, key);
  const m = await serveMirror(join(env.dir, name));
  servers.push(m);
  return m;
}

function opts(m: MirrorServer, extra: KernelOptions = {}): KernelOptions {
  return {
    cacheDir: env.cache,
    mirror: `${m.url}/debian`,
    keyring: key.keyring,
    http: { tries: 2, backoffMs: 10, idleTimeoutMs: 5000 },
    ...extra,
  };
}

const kernels = (): string => kernelCacheDir({ cacheDir: env.cache });
const trees = async (): Promise<string[]> =>
  (await listFiles(join(kernels(), 'trees'))).filter((f) => f.endsWith('/kernel.json'));

describe('a replayed old InRelease', () => {
  it('of the security suite, on the same mirror, is refused: it would hide the kernel with the fix', async () => {
    const m = await mirror('m', archive());
    expect((await getKernel(TRIXIE, env.ctx, opts(m))).version).toBe(NEW);
    // On the path: the security suite's signed InRelease of two days before (still within its Valid-Until), before the fix.
    await writeMirror(join(env.dir, 'm'), archive({ security: kernel('old'), dates: { security: before(2) } }), key);
    await expect(getKernel(TRIXIE, env.ctx, opts(m, { maxAgeMs: 0 }))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(
        new RegExp(
          `InRelease of trixie-security at ${m.url}/debian-security is dated ${before(2).toISOString()}, older than one already seen \\(${T0.toISOString()}, at ${m.url}/debian-security\\)`,
        ),
      ),
      hint: expect.stringMatching(/replaying an old index.*another mirror.*--kernel-mirror https:\/\//),
    });
  });

  it('of every suite, from another mirror, is refused: switching mirrors does not reset what was seen', async () => {
    const good = await mirror('good', archive());
    expect((await getKernel(TRIXIE, env.ctx, opts(good))).version).toBe(NEW);
    const cached = await trees();
    const replay = await mirror(
      'replay',
      archive({ security: kernel('old'), dates: { main: before(40), updates: before(3), security: before(2) } }),
    );
    await expect(getKernel(TRIXIE, env.ctx, opts(replay))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(
        /InRelease of trixie(-updates|-security)? at .* is dated .*, older than one already seen/,
      ),
    });
    expect(await trees()).toEqual(cached);
    // What was seen is not lowered by the refusal: the good mirror still serves the new kernel.
    expect((await getKernel(TRIXIE, env.ctx, opts(good, { maxAgeMs: 0 }))).version).toBe(NEW);
  });

  it('is refused after an upgrade from a cache that has only index records (no memory file yet)', async () => {
    const m = await mirror('m', archive());
    expect((await getKernel(TRIXIE, env.ctx, opts(m))).version).toBe(NEW);
    await rm(join(kernels(), 'seen.json'), { force: true });
    await writeMirror(join(env.dir, 'm'), archive({ security: kernel('old'), dates: { security: before(2) } }), key);
    await expect(getKernel(TRIXIE, env.ctx, opts(m, { maxAgeMs: 0 }))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/InRelease of trixie-security .* older than one already seen/),
    });
  });

  it("is refused even while another mirror's cached answer is fresh", async () => {
    const lagging = await mirror('lagging', archive({ security: kernel('old'), dates: { security: before(2) } }));
    expect((await getKernel(TRIXIE, env.ctx, opts(lagging))).version).toBe(OLD);
    const current = await mirror('current', archive());
    expect((await getKernel(TRIXIE, env.ctx, opts(current))).version).toBe(NEW);
    // The lagging mirror's record is within its TTL, but a newer security suite has been seen since.
    await expect(getKernel(TRIXIE, env.ctx, opts(lagging))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/InRelease of trixie-security .* older than one already seen/),
    });
  });

  it('keeps the newest date seen per suite, whatever order the writes come in', async () => {
    const { recordSeen, readSeen } = await import('../../src/kernel/seen.js');
    const { KernelCache } = await import('../../src/kernel/cache.js');
    const { openStore } = await import('../../src/store/index.js');
    const cache = new KernelCache(openStore(env.cache));
    await recordSeen(cache, { releases: [{ codename: 'trixie-security', date: T0, at: 'https://a/debian-security' }] });
    await recordSeen(cache, {
      releases: [
        { codename: 'trixie-security', date: before(1), at: 'https://b/debian-security' },
        { codename: 'trixie', date: before(30), at: 'https://b/debian' },
      ],
    });
    const seen = await readSeen(cache);
    expect(seen.releases['trixie-security']).toEqual({ date: T0.toISOString(), at: 'https://a/debian-security' });
    expect(seen.releases.trixie).toEqual({ date: before(30).toISOString(), at: 'https://b/debian' });
    expect(JSON.parse(await readFile(join(kernels(), 'seen.json'), 'utf8')).format).toBe(1);
  });
});

describe('the security suite', () => {
  it('missing from the mirror is an error naming the opt-out, not a silently older kernel', async () => {
    const m = await mirror('m', archive({ security: null }));
    await expect(getKernel(TRIXIE, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(
        new RegExp(`trixie-security is not in the security archive at ${m.url}/debian-security`),
      ),
      hint: expect.stringMatching(/--kernel-no-security/),
    });
    expect(await trees()).toEqual([]);
    // Opting out is a choice the user makes, and is told about.
    expect((await getKernel(TRIXIE, env.ctx, opts(m, { securityMirror: null }))).version).toBe(OLD);
    expect(env.logs('warn')).toEqual([
      expect.stringMatching(/without trixie-security .*--kernel-no-security.*security fixes/),
    ]);
  });

  it('is not asked for where Debian has none (sid)', async () => {
    const m = await mirror('m', [
      { archive: 'debian', suite: 'sid', alias: 'unstable', date: before(1), packages: kernel('new') },
    ]);
    expect((await getKernel({ kind: 'debian-archive', suite: 'sid' }, env.ctx, opts(m))).version).toBe(NEW);
    expect(m.count((p) => p.includes('security'))).toBe(0);
  });
});

describe('an older kernel', () => {
  it('than one already seen for the suite set is refused when a suite that had the newer one is withheld', async () => {
    // The fix is in -updates; the security suite has nothing newer.
    const m = await mirror('m', archive({ updates: kernel('new'), security: [] }));
    const first = await getKernel(TRIXIE, env.ctx, opts(m));
    expect(first.version).toBe(NEW);
    expect(first.origin).toMatch(/^Debian trixie-updates /);
    // On the path: trixie-updates answers 404, which an optional suite may; every index left is current and signed.
    m.intercept = (path, res) => {
      if (!path.startsWith('/debian/dists/trixie-updates/')) return false;
      res.writeHead(404).end();
      return true;
    };
    await expect(getKernel(TRIXIE, env.ctx, opts(m, { maxAgeMs: 0 }))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(
        /the newest kernel in trixie, trixie-updates, trixie-security \(amd64\) at .* is linux-image-6\.12\.90\+deb13-cloud-amd64 6\.12\.90-1, older than linux-image-6\.12\.99\+deb13-cloud-amd64 6\.12\.99-1 already seen/,
      ),
      hint: expect.stringMatching(/withholding a suite.*--kernel .*\.deb/),
    });
  });
});

describe('cut off from the archive', () => {
  it('uses the newest cached kernel of the suite, not an older one the unreachable mirror last named', async () => {
    const lagging = await mirror('lagging', archive({ security: kernel('old'), dates: { security: before(2) } }));
    expect((await getKernel(TRIXIE, env.ctx, opts(lagging))).version).toBe(OLD);
    const current = await mirror('current', archive());
    expect((await getKernel(TRIXIE, env.ctx, opts(current))).version).toBe(NEW);
    await lagging.close();
    expect((await getKernel(TRIXIE, env.ctx, opts(lagging))).version).toBe(NEW);
    expect(env.logs('warn').at(-1)).toMatch(/cannot reach .*; using the newest cached trixie kernel 6\.12\.99/);
  });
});

describe('https by default', () => {
  it("fetches from deb.debian.org over https; a user's http mirror or apt proxy stays as given, with its security archive beside it", async () => {
    const { DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR, defaultSecurityMirror, suiteSources } =
      await import('../../src/kernel/archive.js');
    expect(DEFAULT_MIRROR).toBe('https://deb.debian.org/debian');
    expect(
      suiteSources('trixie', DEFAULT_MIRROR, defaultSecurityMirror(DEFAULT_MIRROR)).map(
        (s) => `${s.base}/dists/${s.suite}`,
      ),
    ).toEqual([
      'https://deb.debian.org/debian/dists/trixie',
      'https://deb.debian.org/debian/dists/trixie-updates',
      'https://deb.debian.org/debian-security/dists/trixie-security',
    ]);
    expect(defaultSecurityMirror('http://proxy:3142/deb.debian.org/debian')).toBe(
      'http://proxy:3142/deb.debian.org/debian-security',
    );
    expect(defaultSecurityMirror('http://mirror.example/pub/debian-mirror')).toBe(DEFAULT_SECURITY_MIRROR);
  });

  it('reports a certificate it cannot verify with the ways out, and tries no http instead', async () => {
    const { execFileSync } = await import('node:child_process');
    const { createServer } = await import('node:https');
    const [k, c] = [join(env.dir, 'key.pem'), join(env.dir, 'cert.pem')];
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        k,
        '-out',
        c,
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    let served = 0;
    const s = createServer({ key: await readFile(k), cert: await readFile(c) }, (_req, res) => {
      served++;
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(s.address() as import('node:net').AddressInfo).port}`;
    try {
      await expect(
        getKernel(TRIXIE, env.ctx, {
          cacheDir: env.cache,
          mirror: `${url}/debian`,
          keyring: key.keyring,
          http: { tries: 2, backoffMs: 10 },
        }),
      ).rejects.toMatchObject({
        kind: 'imageNotFound',
        message: expect.stringMatching(
          /cannot fetch the kernel index of trixie from https:\/\/127\.0\.0\.1:\d+\/debian: cannot verify the TLS certificate of 127\.0\.0\.1:\d+ \(DEPTH_ZERO_SELF_SIGNED_CERT\)/,
        ),
        hint: expect.stringMatching(/NODE_EXTRA_CA_CERTS=FILE.*--kernel-mirror http:/),
      });
      expect(served).toBe(0);
    } finally {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });
});

describe('--kernel-no-security', () => {
  it('is an option of the table that reaches the fetch as "no security archive"', async () => {
    const { parseConvertOptions } = await import('../../src/core/options.js');
    const { archiveOptions } = await import('../../src/kernel/index.js');
    expect(archiveOptions(parseConvertOptions({ image: 'x' }))).toEqual({ mirror: undefined });
    expect(
      archiveOptions(parseConvertOptions({ image: 'x', kernelNoSecurity: true, kernelMirror: 'http://m/debian' })),
    ).toEqual({ mirror: 'http://m/debian', securityMirror: null });
  });
});
