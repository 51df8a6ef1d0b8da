// The Debian archive fetch against a fake signed mirror on 127.0.0.1: verified, cached once, refused (and nothing cached) when anything does not check out.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getKernel, kernelCacheDir, resolveModules, type KernelOptions } from '../../src/kernel/index.js';
import { openStore } from '../../src/store/index.js';
import { makeTestKey, type TestKey } from '../../fixtures/debian-mirror/gpg.js';
import { fakeBzImage, fakeKernelDeb, xz } from '../../fixtures/debian-mirror/kernel.js';
import { serveMirror, writeMirror, type MirrorServer, type MirrorSuite } from '../../fixtures/debian-mirror/mirror.js';
import { listFiles, testEnv, type TestEnv } from './helpers.js';

const OLD = '6.12.90+deb13-cloud-amd64';
const NEW = '6.12.99+deb13-cloud-amd64';
const DAY = 24 * 3600_000;

let key: TestKey;
let otherKey: TestKey;
let newDeb: Buffer;
let oldDeb: Buffer;

beforeAll(async () => {
  [key, otherKey] = await Promise.all([makeTestKey(), makeTestKey('someone else')]);
  newDeb = await fakeKernelDeb({
    version: NEW,
    modules: {
      'drivers/block/virtio_blk.ko.xz': xz(Buffer.from('not really a module')),
      'fs/fat/vfat.ko.xz': xz(Buffer.from('vfat')),
      'fs/fat/fat.ko.xz': xz(Buffer.from('fat')),
    },
  });
  oldDeb = await fakeKernelDeb({ version: OLD, usrMerged: false, modules: { 'drivers/block/virtio_blk.ko': 'old' } });
});

afterAll(async () => {
  await Promise.all([key?.close(), otherKey?.close()]);
});

/** trixie has the old kernel, trixie-security the new one; -updates has none. */
function suites(
  o: {
    security?: Partial<MirrorSuite>;
    main?: Partial<MirrorSuite>;
    newDeb?: Buffer;
    claim?: { sha256?: string; size?: number };
  } = {},
): MirrorSuite[] {
  const meta = (v: string, abi: string) => ({
    name: 'linux-image-cloud-amd64',
    version: v,
    depends: `linux-image-${abi} (= ${v})`,
  });
  return [
    {
      archive: 'debian',
      suite: 'trixie',
      alias: 'stable',
      filler: 3000,
      packages: [
        meta('6.12.90-1', OLD),
        {
          name: `linux-image-${OLD}`,
          version: '6.12.90-1',
          depends: 'kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool',
          deb: oldDeb,
        },
      ],
      ...o.main,
    },
    { archive: 'debian', suite: 'trixie-updates', alias: 'stable-updates', packages: [] },
    {
      archive: 'debian-security',
      suite: 'trixie-security',
      alias: 'stable-security',
      validUntil: new Date(Date.now() + 7 * DAY),
      packages: [
        meta('6.12.99-1', NEW),
        {
          name: `linux-image-${NEW}`,
          version: '6.12.99-1',
          deb: o.newDeb ?? newDeb,
          claimSha256: o.claim?.sha256,
          claimSize: o.claim?.size,
        },
        { name: `linux-image-${NEW}-unsigned`, version: '6.12.99-1', deb: o.newDeb ?? newDeb },
      ],
      ...o.security,
    },
  ];
}

let env: TestEnv;
let server: MirrorServer | undefined;

beforeEach(async () => {
  env = await testEnv();
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  await env.close();
});

async function mirror(s: MirrorSuite[]): Promise<MirrorServer> {
  const root = join(env.dir, 'mirror');
  await writeMirror(root, s, key);
  server = await serveMirror(root);
  return server;
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

const debRequests = (m: MirrorServer): number => m.count((p) => p.endsWith('.deb'));

async function expectNothingCached(): Promise<void> {
  const kernels = kernelCacheDir({ cacheDir: env.cache });
  expect(await listFiles(join(kernels, 'trees'))).toEqual([]);
  expect(await listFiles(join(kernels, 'index'))).toEqual([]);
  expect(await listFiles(join(env.cache, 'tmp'))).toEqual([]);
  expect(await listFiles(join(env.cache, 'locks'))).toEqual([]);
}

describe('debian archive: a good mirror', () => {
  it('takes the newest cloud kernel over the suite and its security suite, unpacks it and makes modules.dep', async () => {
    const m = await mirror(suites());
    const progress: [number, number][] = [];
    const b = await getKernel(
      { kind: 'debian-archive', suite: 'trixie' },
      env.ctx,
      opts(m, { onProgress: (d, t) => progress.push([d, t]) }),
    );
    expect(b.version).toBe(NEW);
    expect(b.origin).toBe(`Debian trixie-security linux-image-${NEW} 6.12.99-1`);
    expect(b.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await readFile(b.vmlinuz)).equals(fakeBzImage(NEW))).toBe(true);
    expect(b.modulesDir).toBe(
      join(kernelCacheDir({ cacheDir: env.cache }), 'trees', `sha256-${b.id.slice(7)}`, 'lib', 'modules', NEW),
    );
    const dep = await readFile(join(b.modulesDir!, 'modules.dep'), 'utf8');
    expect(dep.split('\n').filter(Boolean).sort()).toEqual([
      'kernel/drivers/block/virtio_blk.ko.xz:',
      'kernel/fs/fat/fat.ko.xz:',
      'kernel/fs/fat/vfat.ko.xz:',
    ]);
    expect(await readFile(b.config!, 'utf8')).toContain('CONFIG_VIRTIO_BLK=m');
    // Only kernel material is kept: no System.map, no /usr/share/doc.
    const tree = await listFiles(join(b.modulesDir!, '..', '..', '..'));
    expect(tree.filter((f) => !f.startsWith(`lib/modules/${NEW}/modules.`))).toEqual([
      `boot/config-${NEW}`,
      `boot/vmlinuz-${NEW}`,
      'kernel.json',
      `lib/modules/${NEW}/kernel/drivers/block/virtio_blk.ko.xz`,
      `lib/modules/${NEW}/kernel/fs/fat/fat.ko.xz`,
      `lib/modules/${NEW}/kernel/fs/fat/vfat.ko.xz`,
    ]);
    expect(resolveModules(b, ['vfat', 'ext4']).map((x) => [x.name, x.compressed])).toEqual([['vfat', 'xz']]);
    expect(progress.at(-1)).toEqual([newDeb.length, newDeb.length]);
    // Indexes by hash, the package once, nothing else from the pool.
    expect(m.count((p) => p.includes('/by-hash/SHA256/'))).toBe(3);
    expect(m.requests.filter((p) => p.endsWith('.deb'))).toEqual([
      `/debian-security/pool/main/l/linux/linux-image-${NEW}_6.12.99-1_amd64.deb`,
    ]);
  });

  it('with peek, names the kernel by the signed index without downloading it, and the id is the fetched one', async () => {
    const m = await mirror(suites());
    const peeked = await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { peek: true }));
    expect(peeked).toMatchObject({ peeked: true, origin: `Debian trixie-security linux-image-${NEW} 6.12.99-1` });
    expect(debRequests(m)).toBe(0);
    await expectNothingCached();
    const asked = m.requests.length;
    const fetched = await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m));
    expect(fetched.id).toBe(peeked.id);
    // The fetch that follows the peek in the same run takes the package the peek resolved, asking nothing else.
    expect(m.requests.slice(asked)).toEqual([
      `/debian-security/pool/main/l/linux/linux-image-${NEW}_6.12.99-1_amd64.deb`,
    ]);
    expect(fetched.peeked).toBeUndefined();
    // Once cached, a peek gives the whole kernel.
    expect(await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { peek: true }))).toEqual(
      fetched,
    );
  });

  it('serves a second conversion from the cache without asking the archive, even when it is gone', async () => {
    const m = await mirror(suites());
    const first = await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m));
    const asked = m.requests.length;
    await m.close();
    server = undefined;
    const second = await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m));
    expect(second).toEqual(first);
    expect(m.requests.length).toBe(asked);
    expect(env.logs('warn')).toEqual([]);
    // Past the TTL the archive is asked; unreachable, the cached kernel is used and the user told.
    const stale = await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { maxAgeMs: 0 }));
    expect(stale).toEqual(first);
    expect(env.logs('warn')).toEqual([
      expect.stringMatching(new RegExp(`cannot reach .*; using the cached kernel ${NEW.replace(/\+/g, '\\+')}`)),
    ]);
    // Offline by choice: the cache, no network.
    expect(
      await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { offline: true, maxAgeMs: 0 })),
    ).toEqual(first);
  });

  it('fails with the cause when the archive is unreachable and nothing is cached', async () => {
    const m = await mirror(suites());
    await m.close();
    server = undefined;
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/cannot fetch the kernel index of trixie .*ECONNREFUSED/),
    });
    await expect(
      getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { offline: true })),
    ).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/no trixie kernel for amd64 is cached/),
    });
  });

  it('downloads once for two concurrent fetches of the same suite', async () => {
    const m = await mirror(suites());
    const [a, b] = await Promise.all(
      [0, 1].map(() => getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))),
    );
    expect(a).toEqual(b);
    expect(debRequests(m)).toBe(1);
    expect(m.count((p) => p.endsWith('/InRelease'))).toBe(3);
  });

  it('a fetch that waited for the lock takes the answer the holder cached, though it read the clock before that answer was made', async () => {
    // Two runs at once: the one that reads the clock first can get the lock last. Its earlier reading must not make
    // the answer just cached look like one from the future (which is never fresh), or it fetches everything again.
    const m = await mirror(suites());
    const base = Date.now();
    let t = base + 2000;
    const o = opts(m, { now: () => new Date(t) });
    await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, o);
    const inRelease = () => m.count((p) => p.endsWith('/InRelease'));
    expect(inRelease()).toBe(3);
    const { indexKey } = await import('../../src/kernel/debian.js');
    const held = await openStore(env.cache).lock(
      'kernel',
      `index-${indexKey(`${m.url}/debian`, `${m.url}/debian-security`, 'trixie', 'amd64')}`,
    );
    t = base + 1000;
    const waiter = getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, o);
    for (let i = 0; !env.logs('info').some((l) => /waiting for img2vm process \d+/.test(l)); i++) {
      if (i === 1000)
        throw new Error(`the second fetch never waited for the lock; it logged:\n${env.logs().join('\n')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    t = base + 3000;
    await held.release();
    expect((await waiter).version).toBe(NEW);
    expect(inRelease()).toBe(3);
  });

  it('breaks a lock left by a process that died', async () => {
    const m = await mirror(suites());
    const locks = join(env.cache, 'locks');
    await mkdir(locks, { recursive: true });
    // The key is derived from the mirror and suite; any lock there from a dead pid must not block.
    const { indexKey } = await import('../../src/kernel/debian.js');
    const k = indexKey(`${m.url}/debian`, `${m.url}/debian-security`, 'trixie', 'amd64');
    await writeFile(
      openStore(env.cache).lockPath('kernel', `index-${k}`),
      JSON.stringify({ pid: 2 ** 22 + 12345, host: (await import('node:os')).hostname(), nonce: 'dead' }),
    );
    expect((await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).version).toBe(NEW);
    expect(await listFiles(locks)).toEqual([]);
  });

  it('fails when the security archive does not answer (naming the opt-out), uses a kernel it already has, and skips it only when told to', async () => {
    const m = await mirror(suites());
    const cut = (path: string, res: import('node:http').ServerResponse): boolean => {
      if (!path.startsWith('/debian-security/')) return false;
      res.socket?.destroy();
      return true;
    };
    m.intercept = cut;
    // Nothing cached: no kernel without its security suite, unless the user says so.
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/cannot fetch the security suite trixie-security from .*\/debian-security/),
      hint: expect.stringMatching(/--kernel-no-security/),
    });
    await expectNothingCached();
    const b = await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { securityMirror: null }));
    expect(b.version).toBe(OLD);
    expect(env.logs('warn')).toEqual([
      expect.stringMatching(/fetching without trixie-security \(--kernel-no-security\)/),
    ]);
    // bookworm's layout: lib/modules, uncompressed modules.
    expect(resolveModules(b, ['virtio-blk'])).toEqual([
      { name: 'virtio_blk', path: join(b.modulesDir!, 'kernel/drivers/block/virtio_blk.ko'), compressed: null },
    ]);
    // With the security suite once fetched, a later cut falls back to that kernel (newer than any other cached), with a warning.
    m.intercept = undefined;
    expect((await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).version).toBe(NEW);
    m.intercept = cut;
    expect(
      (await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { maxAgeMs: 0 }))).version,
    ).toBe(NEW);
    expect(env.logs('warn').at(-1)).toMatch(
      new RegExp(`cannot reach .*/debian-security; using the cached kernel ${NEW.replace(/\+/g, '\\+')}`),
    );
  });

  it('accepts an expired security suite only when asked to', async () => {
    const m = await mirror(
      suites({ security: { date: new Date(Date.now() - 30 * DAY), validUntil: new Date(Date.now() - 23 * DAY) } }),
    );
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/trixie-security\/InRelease: it expired on/),
    });
    await expectNothingCached();
    expect(
      (await getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m, { allowExpired: true }))).version,
    ).toBe(NEW);
  });
});

describe('debian archive: refusals, with nothing cached', () => {
  it('refuses an InRelease whose signed text was changed', async () => {
    const m = await mirror(
      suites({
        security: {
          tamperInRelease: (b) =>
            Buffer.from(b.toString('latin1').replace('Components: main', 'Components: mainz'), 'latin1'),
        },
      }),
    );
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/trixie-security\/InRelease: the signature is not valid: a signature is BAD/),
    });
    expect(debRequests(m)).toBe(0);
    await expectNothingCached();
  });

  it('refuses an InRelease signed by a key not in the keyring', async () => {
    const m = await mirror(suites());
    await writeMirror(join(env.dir, 'mirror'), suites().slice(2), otherKey);
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/the signature is not valid: no good signature/),
    });
    await expectNothingCached();
  });

  it('refuses unsigned text put before the signed message', async () => {
    const m = await mirror(
      suites({
        security: {
          tamperInRelease: (b) => Buffer.concat([Buffer.from('SHA256:\n 0000 1 main/binary-amd64/Packages.xz\n\n'), b]),
        },
      }),
    );
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/not a well-formed signed Release/),
    });
    await expectNothingCached();
  });

  it('refuses a signed Release of another suite served in its place', async () => {
    const m = await mirror(
      suites({
        security: {
          tamperRelease: (r) =>
            r
              .replace('Codename: trixie-security', 'Codename: bookworm-security')
              .replace('Suite: stable-security', 'Suite: oldstable-security'),
        },
      }),
    );
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/it is for suite bookworm-security, not trixie-security/),
    });
    await expectNothingCached();
  });

  it('refuses a Packages index whose hash does not match the signed Release', async () => {
    const m = await mirror(
      suites({
        security: { tamperPackages: (b) => Buffer.concat([b.subarray(0, -1), Buffer.from([b[b.length - 1]! ^ 1])]) },
      }),
    );
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(
        /Packages\.xz: it has \d+ bytes with SHA-256 [0-9a-f]{64}, but the signed Release says/,
      ),
    });
    expect(debRequests(m)).toBe(0);
    await expectNothingCached();
  });

  it('refuses a package whose hash does not match the index', async () => {
    const m = await mirror(suites({ claim: { sha256: 'ab'.repeat(32) } }));
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(
        new RegExp(
          `linux-image-${NEW.replace(/\+/g, '\\+')}_6\\.12\\.99-1_amd64\\.deb has SHA-256 [0-9a-f]{64}, but the signed index says abab`,
        ),
      ),
    });
    await expectNothingCached();
  });

  it('refuses a package larger than the index says, without reading it all', async () => {
    const m = await mirror(suites({ claim: { size: 100 } }));
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/is \d+ bytes, but the index says 100/),
    });
    await expectNothingCached();
  });

  it('refuses a correctly signed package that is not a kernel package', async () => {
    const m = await mirror(
      suites({ newDeb: Buffer.from('!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n') }),
    );
    await expect(getKernel({ kind: 'debian-archive', suite: 'trixie' }, env.ctx, opts(m))).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/no data\.tar member/),
    });
    await expectNothingCached();
  });
});

describe('local .deb', () => {
  it('unpacks a kernel package from disk once, keyed by its hash', async () => {
    const path = join(env.dir, 'k.deb');
    await writeFile(path, newDeb);
    const a = await getKernel({ kind: 'deb', path }, env.ctx, { cacheDir: env.cache });
    expect(a.version).toBe(NEW);
    expect(a.id).toBe(`sha256:${(await import('node:crypto')).createHash('sha256').update(newDeb).digest('hex')}`);
    expect(await getKernel({ kind: 'deb', path }, env.ctx, { cacheDir: env.cache })).toEqual(a);
  });

  it('refuses a .deb whose data is not a tar, and leaves no decompressor running', async () => {
    const { arOf } = await import('../../fixtures/debian-mirror/kernel.js');
    const path = join(env.dir, 'bad.deb');
    const junk = Buffer.concat([Buffer.from('boot/vmlinuz-1'), Buffer.alloc(4 << 20, 0x41)]);
    await writeFile(
      path,
      arOf([
        { name: 'debian-binary', data: Buffer.from('2.0\n') },
        { name: 'control.tar.xz', data: xz(Buffer.alloc(10)) },
        { name: 'data.tar.xz', data: xz(junk) },
      ]),
    );
    await expect(getKernel({ kind: 'deb', path }, env.ctx, { cacheDir: env.cache })).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/bad tar header checksum/),
    });
    const { execFileSync } = await import('node:child_process');
    const children = execFileSync('ps', ['-o', 'comm=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split(
      '\n',
    );
    expect(children).not.toContain('xz');
    await expectNothingCached();
  });

  it('refuses a truncated .deb and caches nothing', async () => {
    const path = join(env.dir, 'k.deb');
    await writeFile(path, newDeb.subarray(0, newDeb.length - 100));
    await expect(getKernel({ kind: 'deb', path }, env.ctx, { cacheDir: env.cache })).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/runs past the end of the file/),
    });
    await expectNothingCached();
  });
});
