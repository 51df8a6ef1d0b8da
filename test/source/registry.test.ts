// The registry client against an in-process fake registry: auth (bearer, basic, config.json), platforms, ranges, retries, cache and pull policies (zstd and credential helpers: registry.tools.test.ts).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DockerClient } from '../../src/source/docker-api.js';
import { openSource, type OpenSourceOptions } from '../../src/source/index.js';
import { makeClient } from '../../src/source/pull.js';
import { parseChallenges } from '../../src/source/registry.js';
import { parseDockerReference } from '../../src/source/reference.js';
import { buildImage, buildIndex, gz, tarOf, type BuiltImage } from '../../fixtures/hostile/images.js';
import { FakeRegistry, type FakeRegistryOptions } from '../../fixtures/hostile/registry.js';
import { flatten, listTree, partials, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let reg: FakeRegistry;

async function start(o: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  reg = await FakeRegistry.start(o);
  return reg;
}

beforeEach(async () => {
  sb = await sandbox();
});
afterEach(async () => {
  await reg?.close();
  await sb.close();
});

/** An image with `n` layers holding incompressible files, so sizes are what they say. */
async function image(
  n = 2,
  bytes = 64 * 1024,
  platform?: BuiltImage['platform'],
  tagFile = 'marker',
): Promise<BuiltImage> {
  const layers: Buffer[] = [];
  for (let i = 0; i < n; i++)
    layers.push(
      gz(
        await tarOf({
          [`layer${i}/`]: { dir: true },
          [`layer${i}/data.bin`]: randomBytes(bytes),
          [`${tagFile}${i}`]: `${i}\n`,
        }),
      ),
    );
  return buildImage({ layers, platform });
}

function opts(extra: OpenSourceOptions = {}): OpenSourceOptions {
  return { cacheDir: sb.cache, registry: { backoffMs: 1 }, env: { HOME: sb.input }, ...extra };
}

async function pullAndList(ref: string, o: OpenSourceOptions = opts()): Promise<string[]> {
  const img = await openSource(ref, sb.ctx, undefined, o);
  const root = join(sb.work, `root-${Math.random().toString(36).slice(2)}`);
  await flatten(img, root);
  return listTree(root);
}

describe('pulling', () => {
  it('pulls anonymously with a bearer token, fetched once per scope', async () => {
    await start({ auth: 'bearer', anonymous: true });
    const img = await image(3);
    reg.push('team/app', 'v1', img);
    const got = await openSource(`docker://${reg.host}/team/app:v1`, sb.ctx, undefined, opts());
    expect(got.id).toBe(img.config.digest);
    expect(got.manifestDigest).toBe(img.manifest.digest);
    expect(got.transport).toBe('docker');
    expect(got.layers.map((l) => l.digest)).toEqual(img.layers.map((l) => l.digest));
    expect(reg.tokenRequests).toHaveLength(1);
    expect(reg.tokenRequests[0]!.url).toContain('scope=repository%3Ateam%2Fapp%3Apull');
    expect(reg.blobRequests().every((r) => r.authorization?.startsWith('Bearer '))).toBe(true);
    const root = join(sb.work, 'root');
    await flatten(got, root);
    expect(await listTree(root)).toEqual([
      'layer0',
      'layer0/data.bin',
      'layer1',
      'layer1/data.bin',
      'layer2',
      'layer2/data.bin',
      'marker0',
      'marker1',
      'marker2',
    ]);
    // Layers live in the content-addressed cache.
    const names = await readdir(join(sb.cache, 'blobs', 'sha256'));
    for (const l of img.layers) expect(names).toContain(l.digest.slice(7));
    expect(
      sb.events.some((e) => e.type === 'log' && e.level === 'debug' && /layer [0-9a-f]{12}: /.test(e.message)),
    ).toBe(true);
  });

  it('pulls by digest and by tag@digest', async () => {
    await start();
    const img = await image(1);
    reg.push('x', 'v1', img);
    expect((await openSource(`docker://${reg.host}/x@${img.manifest.digest}`, sb.ctx, undefined, opts())).id).toBe(
      img.config.digest,
    );
    expect((await openSource(`docker://${reg.host}/x:v1@${img.manifest.digest}`, sb.ctx, undefined, opts())).id).toBe(
      img.config.digest,
    );
  });

  it('chooses the platform from a manifest list or an OCI index; attestations never match', async () => {
    await start();
    const amd = await image(1, 1024, { os: 'linux', architecture: 'amd64' }, 'amd');
    const arm = await image(1, 1024, { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'arm');
    const attestation = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: amd.manifest.digest,
      size: amd.manifest.size,
      platform: { os: 'unknown', architecture: 'unknown' },
    };
    for (const [flavour, repo] of [
      ['docker', 'multi-docker'],
      ['oci', 'multi-oci'],
    ] as const) {
      reg.push(repo, undefined, amd);
      reg.push(repo, undefined, arm);
      reg.putManifest(repo, buildIndex([amd, arm], flavour, [attestation]), 'v1');
      const ref = `docker://${reg.host}/${repo}:v1`;
      expect((await openSource(ref, sb.ctx, undefined, opts({ platform: 'linux/amd64' }))).id).toBe(amd.config.digest);
      expect((await openSource(ref, sb.ctx, undefined, opts({ platform: 'linux/arm64' }))).id).toBe(arm.config.digest);
      expect((await openSource(ref, sb.ctx, undefined, opts({ platform: 'linux/aarch64/v8' }))).id).toBe(
        arm.config.digest,
      );
      await expect(openSource(ref, sb.ctx, undefined, opts({ platform: 'linux/s390x' }))).rejects.toMatchObject({
        kind: 'imageNotFound',
        message: expect.stringMatching(/no image for linux\/s390x/),
        hint: expect.stringMatching(/it has: linux\/amd64, linux\/arm64\/v8;/),
      });
    }
    // The host default: linux/amd64 on x86_64.
    if (process.arch === 'x64')
      expect((await openSource(`docker://${reg.host}/multi-oci:v1`, sb.ctx, undefined, opts())).id).toBe(
        amd.config.digest,
      );
  });

  it('refuses a single-platform image of another platform only when --platform asks for one', async () => {
    await start();
    const arm = await image(1, 1024, { os: 'linux', architecture: 'arm64' });
    reg.push('arm', 'v1', arm);
    await expect(
      openSource(`docker://${reg.host}/arm:v1`, sb.ctx, undefined, opts({ platform: 'linux/amd64' })),
    ).rejects.toThrow(/is linux\/arm64, not linux\/amd64/);
    expect((await openSource(`docker://${reg.host}/arm:v1`, sb.ctx, undefined, opts())).id).toBe(arm.config.digest);
  });

  it('downloads at most three layers at a time', async () => {
    await start();
    const img = await image(7, 256 * 1024);
    reg.push('par', 'v1', img);
    reg.faults.blobDelayMs = 30;
    await openSource(`docker://${reg.host}/par:v1`, sb.ctx, undefined, opts());
    expect(reg.maxBlobsInFlight).toBe(3);
  });
});

describe('flaky registries', () => {
  it('retries 503s, honouring Retry-After', async () => {
    await start();
    const img = await image(2);
    reg.push('flaky', 'v1', img);
    reg.faults.unavailable = 3;
    reg.faults.retryAfter = '0';
    expect(await pullAndList(`docker://${reg.host}/flaky:v1`)).toContain('marker1');
    expect(reg.log.filter((l) => l.status === 503)).toHaveLength(3);
    expect(sb.events.some((e) => e.type === 'log' && /HTTP 503.*retrying in 0 ms/.test(e.message))).toBe(true);
  });

  it('waits as long as a 429 says in Retry-After', async () => {
    await start();
    reg.push('limited', 'v1', await image(1));
    reg.faults.unavailable = 1;
    reg.faults.unavailableStatus = 429;
    reg.faults.retryAfter = '1';
    await openSource(`docker://${reg.host}/limited:v1`, sb.ctx, undefined, opts());
    // The wait the client chose, as it logs it (a measured time would make the test depend on the machine's load).
    expect(sb.events.some((e) => e.type === 'log' && /HTTP 429.*retrying in 1000 ms/.test(e.message))).toBe(true);
    expect(reg.log.filter((l) => l.status === 429)).toHaveLength(1);
  });

  it('gives up after five tries with the status it kept getting', async () => {
    await start();
    reg.push('down', 'v1', await image(1));
    reg.faults.unavailable = 100;
    await expect(openSource(`docker://${reg.host}/down:v1`, sb.ctx, undefined, opts())).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/answered HTTP 503 .* 5 times/),
    });
    expect(reg.log.filter((l) => l.status === 503)).toHaveLength(5);
  });

  it('resumes a broken blob download with a Range request', async () => {
    await start();
    const img = await image(1, 300_000);
    reg.push('resume', 'v1', img);
    reg.faults.breakBlob = { bytes: 100_000, times: 2 };
    expect(await pullAndList(`docker://${reg.host}/resume:v1`)).toContain('marker0');
    const reqs = reg.blobRequests(img.layers[0]!.digest);
    // Each resume asks from where the bytes received so far end (a reset socket may lose some in flight).
    const starts = reqs.map((r) => (r.range ? Number(/^bytes=(\d+)-$/.exec(r.range)![1]) : 0));
    expect(starts[0]).toBe(0);
    expect(starts[1]).toBeGreaterThan(0);
    expect(starts[1]).toBeLessThanOrEqual(100_000);
    expect(starts[2]).toBeGreaterThan(starts[1]!);
    expect(reqs.map((r) => r.status)).toEqual([200, 206, 206]);
    expect(await partials(sb.cache)).toEqual([]);
  });

  it('starts over when the registry ignores Range', async () => {
    await start({ ranges: false });
    const img = await image(1, 300_000);
    reg.push('norange', 'v1', img);
    reg.faults.breakBlob = { bytes: 100_000, times: 1 };
    expect(await pullAndList(`docker://${reg.host}/norange:v1`)).toContain('marker0');
    const reqs = reg.blobRequests(img.layers[0]!.digest);
    expect(reqs.map((r) => r.status)).toEqual([200, 200]);
    expect(reqs[1]!.range).toMatch(/^bytes=[1-9]\d*-$/);
  });

  it('follows a blob redirect to another origin without sending it the credentials', async () => {
    await start({ auth: 'bearer', anonymous: true });
    const img = await image(1);
    reg.push('cdn', 'v1', img);
    const seen: (string | undefined)[] = [];
    const cdn = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.end(img.layers[0]!.bytes);
    });
    await new Promise<void>((r) => cdn.listen(0, '127.0.0.1', r));
    try {
      const port = (cdn.address() as AddressInfo).port;
      reg.faults.hook = (req, res) => {
        if (!req.url?.includes(img.layers[0]!.digest) || !req.headers.authorization) return false;
        res.writeHead(307, { Location: `http://localhost:${port}/blob` });
        res.end();
        return true;
      };
      expect(await pullAndList(`docker://${reg.host}/cdn:v1`)).toContain('marker0');
      expect(seen).toEqual([undefined]);
    } finally {
      cdn.close();
    }
  });
});

describe('credentials', () => {
  it('uses basic auth from config.json auths (base64 user:password)', async () => {
    await start({ auth: 'basic', users: { alice: 's3cret' } });
    reg.push('private', 'v1', await image(1));
    const ref = `docker://${reg.host}/private:v1`;
    await expect(openSource(ref, sb.ctx, undefined, opts())).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/requires a login/),
      hint: expect.stringMatching(/docker login 127\.0\.0\.1:/),
    });
    const dir = join(sb.input, 'docker');
    await mkdir(dir);
    await writeFile(
      join(dir, 'config.json'),
      JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: Buffer.from('alice:wrong').toString('base64') } } }),
    );
    await expect(openSource(ref, sb.ctx, undefined, opts({ env: { DOCKER_CONFIG: dir } }))).rejects.toThrow(
      /denied access/,
    );
    await writeFile(
      join(dir, 'config.json'),
      JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }),
    );
    expect(await pullAndList(ref, opts({ env: { DOCKER_CONFIG: dir } }))).toContain('marker0');
    expect(
      reg.blobRequests().every((r) => r.authorization === `Basic ${Buffer.from('alice:s3cret').toString('base64')}`),
    ).toBe(true);
  });

  it('sends username/password to the token realm of a bearer registry', async () => {
    await start({ auth: 'bearer', users: { bob: 'pw' } });
    reg.push('private', 'v1', await image(1));
    const ref = `docker://${reg.host}/private:v1`;
    await expect(openSource(ref, sb.ctx, undefined, opts())).rejects.toThrow(/refused an anonymous token/);
    await mkdir(join(sb.input, '.docker'));
    await writeFile(
      join(sb.input, '.docker', 'config.json'),
      JSON.stringify({ auths: { [reg.host]: { username: 'bob', password: 'pw' } } }),
    );
    expect(await pullAndList(ref)).toContain('marker0');
    expect(reg.tokenRequests.at(-1)!.authorization).toBe(`Basic ${Buffer.from('bob:pw').toString('base64')}`);
  });

  it('refuses an invalid config.json with a usage error', async () => {
    await start({ auth: 'basic', users: {} });
    reg.push('private', 'v1', await image(1));
    const dir = join(sb.input, 'bad');
    await mkdir(dir);
    await writeFile(join(dir, 'config.json'), '{"auths": ');
    await expect(
      openSource(`docker://${reg.host}/private:v1`, sb.ctx, undefined, opts({ env: { DOCKER_CONFIG: dir } })),
    ).rejects.toMatchObject({ kind: 'usage', message: expect.stringMatching(/config\.json is not valid JSON/) });
  });
});

describe('cache and pull policies', () => {
  it('reuses cached blobs; --pull always asks for the manifest again but not for blobs', async () => {
    await start();
    const img = await image(2);
    reg.push('c', 'v1', img);
    const ref = `docker://${reg.host}/c:v1`;
    await openSource(ref, sb.ctx, undefined, opts());
    const n = reg.log.length;
    await openSource(ref, sb.ctx, undefined, opts());
    expect(reg.log.length).toBe(n); // missing: the cached tag answers
    await openSource(ref, sb.ctx, undefined, opts({ pull: 'always' }));
    const later = reg.log.slice(n);
    expect(later.filter((l) => l.url.includes('/manifests/'))).toHaveLength(1);
    expect(later.filter((l) => l.url.includes('/blobs/'))).toHaveLength(0);
  });

  it('--pull never uses only the cache', async () => {
    await start();
    const img = await image(1);
    reg.push('n', 'v1', img);
    const ref = `docker://${reg.host}/n:v1`;
    await expect(openSource(ref, sb.ctx, undefined, opts({ pull: 'never' }))).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/--pull never/),
    });
    expect(reg.log).toHaveLength(0);
    await openSource(ref, sb.ctx, undefined, opts());
    await reg.close();
    const got = await openSource(ref, sb.ctx, undefined, opts({ pull: 'never' }));
    expect(got.id).toBe(img.config.digest);
    const root = join(sb.work, 'never');
    await flatten(got, root);
    expect(await listTree(root)).toContain('marker0');
  });

  it('lets concurrent pulls of the same blobs share the cache safely', async () => {
    await start();
    const img = await image(3, 512 * 1024);
    reg.push('shared', 'v1', img);
    const ref = `docker://${reg.host}/shared:v1`;
    const results = await Promise.all(Array.from({ length: 4 }, () => openSource(ref, sb.ctx, undefined, opts())));
    for (const r of results) expect(r.id).toBe(img.config.digest);
    expect(await partials(sb.cache)).toEqual([]);
    for (const l of img.layers)
      expect((await readFile(join(sb.cache, 'blobs', 'sha256', l.digest.slice(7)))).equals(l.bytes)).toBe(true);
    for (const [i, r] of results.entries()) {
      const root = join(sb.work, `r${i}`);
      await flatten(r, root);
      expect(await listTree(root)).toContain('marker2');
    }
  });

  it('with --verify-cache, hashes cached blobs again before use, and fetches a damaged one anew', async () => {
    await start();
    const img = await image(1);
    reg.push('d', 'v1', img);
    const ref = `docker://${reg.host}/d:v1`;
    await openSource(ref, sb.ctx, undefined, opts());
    const p = join(sb.cache, 'blobs', 'sha256', img.layers[0]!.digest.slice(7));
    const damage = async () => {
      const b = await readFile(p);
      b[100] = b[100]! ^ 1;
      await writeFile(p, b);
    };
    await damage();
    const n = reg.blobRequests().length;
    const got = await openSource(ref, sb.ctx, undefined, opts({ verifyCache: true }));
    expect(reg.blobRequests().length).toBe(n + 1);
    expect((await readFile(p)).equals(img.layers[0]!.bytes)).toBe(true);
    expect(await listTree(await flatten(got, join(sb.work, 'x')).then(() => join(sb.work, 'x')))).toContain('marker0');
    // Damage after the check is still caught when the layer is read.
    await damage();
    await expect(flatten(got, join(sb.work, 'y'))).rejects.toThrow(/layer is corrupt|does not match its digest/);
    await expect(openSource(ref, sb.ctx, undefined, opts({ pull: 'never', verifyCache: true }))).rejects.toThrow(
      /--pull never/,
    );
  });
});

describe('bare references', () => {
  it('fall back to the registry when the daemon is unreachable, and say both when neither works', async () => {
    await start();
    reg.push('team/app', 'v1', await image(1));
    const down = new DockerClient({ socketPath: join(sb.input, 'no.sock') });
    const img = await openSource(`${reg.host}/team/app:v1`, sb.ctx, down, opts());
    expect(img.transport).toBe('docker');
    await expect(openSource(`${reg.host}/team/nope:v1`, sb.ctx, down, opts())).rejects.toMatchObject({
      kind: 'daemonUnreachable',
      message: expect.stringMatching(
        /cannot reach the Docker daemon .*, and manifest team\/nope:v1 is not in registry/,
      ),
    });
  });
});

describe('registry client pieces', () => {
  it('parses WWW-Authenticate challenges', () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/debian:pull',
        },
      },
    ]);
    expect(parseChallenges('Basic realm="Registry Realm"')).toEqual([
      { scheme: 'basic', params: { realm: 'Registry Realm' } },
    ]);
    expect(parseChallenges('Bearer realm="a\\"b", error=invalid_token, Basic realm=x')).toEqual([
      { scheme: 'bearer', params: { realm: 'a"b', error: 'invalid_token' } },
      { scheme: 'basic', params: { realm: 'x' } },
    ]);
  });

  it('speaks HTTPS except to loopback and insecure registries; docker.io goes to registry-1.docker.io', () => {
    const p = { ctx: sb.ctx, insecureRegistries: ['registry.lan:5000'] } as unknown as Parameters<typeof makeClient>[1];
    expect(makeClient(parseDockerReference('debian'), p).base.href).toBe('https://registry-1.docker.io/');
    expect(makeClient(parseDockerReference('localhost:5000/x'), p).base.href).toBe('http://localhost:5000/');
    expect(makeClient(parseDockerReference('127.0.0.1:5000/x'), p).base.href).toBe('http://127.0.0.1:5000/');
    expect(makeClient(parseDockerReference('[::1]:5000/x'), p).base.href).toBe('http://[::1]:5000/');
    expect(makeClient(parseDockerReference('registry.lan:5000/x'), p).base.href).toBe('http://registry.lan:5000/');
    expect(makeClient(parseDockerReference('registry.lan/x'), p).base.href).toBe('https://registry.lan/');
  });
});
