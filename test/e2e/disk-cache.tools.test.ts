// The converted-disk cache across machines: one machine converts and pushes the disk to a registry (--cache-to), a
// second with an empty cache pulls it (--cache-from) instead of converting, and gets the bytes a third machine's own
// conversion writes; a plain disk pushed with --push is an OCI artifact another client (skopeo) reads.
import { execa, type ResultPromise } from 'execa';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxArchive, kernelFiles } from './ci-fixtures.js';
import { img2vm, startRegistry } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };
const EPOCH = { SOURCE_DATE_EPOCH: '1700000000' };

let tmp: string;
let image: string;
let registry: ResultPromise | undefined;
let host: string;
let kernelArgs: string[];
const timings: string[] = [];

const sha256 = async (f: string) =>
  createHash('sha256')
    .update(await readFile(f))
    .digest('hex');

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-diskcache-'));
  image = join(tmp, 'busybox.tar');
  await busyboxArchive(image, 'cached disk');
  // The kernel as files, so each "machine" starts with an empty cache and no network.
  kernelArgs = await kernelFiles(join(tmp, 'kernel'));
  ({ host, process: registry } = await startRegistry(join(tmp, 'registry')));
}, 10 * 60_000);

afterAll(async () => {
  if (timings.length) console.log(`disk cache:\n${timings.join('\n')}`);
  if (registry) {
    registry.kill('SIGTERM');
    await registry;
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** One conversion on a "machine" of its own: its own empty cache directory. */
async function onMachine(name: string, args: string[]) {
  const cache = join(tmp, `machine-${name}`);
  await mkdir(cache, { recursive: true });
  const out = join(tmp, `${name}.qcow2`);
  const t0 = performance.now();
  const r = await img2vm([`oci-archive:${image}`, '-o', out, '--seed', 'ci', '--json', ...kernelArgs, ...args], {
    env: { ...NO_DAEMON, ...EPOCH, XDG_CACHE_HOME: cache },
  });
  const s = (performance.now() - t0) / 1000;
  expect(r.exitCode, r.all).toBe(0);
  timings.push(`${name}: ${s.toFixed(1)} s`);
  return { out, cache, s, json: JSON.parse(r.stdout) as { disk?: { key: string; from: string | null } } };
}

describe('--cache-to and --cache-from', () => {
  it('a second machine with an empty cache gets the same bytes from the registry, and so does a conversion', async () => {
    const repo = `${host}/ci/img2vm-cache`;
    const a = await onMachine('a', ['--cache-to', repo]);
    expect(a.json.disk).toMatchObject({ key: expect.stringMatching(/^[0-9a-f]{64}$/), from: null });
    const key = a.json.disk!.key;

    const b = await onMachine('b', ['--cache-from', repo]);
    expect(b.json.disk).toEqual({ key, from: `${repo}:${key}` });
    expect(await sha256(b.out)).toBe(await sha256(a.out));

    // The cache is honest: a third machine converting by itself writes the same bytes.
    const c = await onMachine('c', []);
    expect(await sha256(c.out)).toBe(await sha256(a.out));
    timings.push(`cache-from took ${((b.s / a.s) * 100).toFixed(0)} % of the converting run's time`);

    // b keeps the pulled disk: a second run there takes it from its own cache, and cache ls lists it.
    const again = await onMachine('b', ['--cache-from', `${host}/ci/nothing-here`]);
    expect(again.json.disk).toEqual({ key, from: 'the local cache' });
    const ls = await img2vm(['cache', 'ls', '--json'], { env: { ...NO_DAEMON, XDG_CACHE_HOME: b.cache } });
    const entries = (JSON.parse(ls.stdout) as { entries: { kind: string; name: string }[] }).entries;
    expect(entries).toContainEqual(expect.objectContaining({ kind: 'converted-disk', name: `disk:${key}` }));
  });

  it('converts when the cache misses, and a different option is a different key', async () => {
    const repo = `${host}/ci/img2vm-cache`;
    const d = await onMachine('d', ['--cache-from', repo, '--hostname', 'other']);
    expect(d.json.disk?.from).toBeNull();
  });

  it('refuses a cache without --seed, a repository with a tag, and an encrypted root', async () => {
    const noSeed = await img2vm([`oci-archive:${image}`, '-o', join(tmp, 'x.qcow2'), '--cache-to', `${host}/c`], {
      env: NO_DAEMON,
    });
    expect(noSeed.exitCode).toBe(2);
    expect(noSeed.stderr).toMatch(/--cache-to needs --seed/);
    const tagged = await img2vm(
      [`oci-archive:${image}`, '-o', join(tmp, 'x.qcow2'), '--seed', 's', '--cache-from', `${host}/c:1`],
      { env: NO_DAEMON },
    );
    expect(tagged.exitCode).toBe(2);
    expect(tagged.stderr).toMatch(/give a repository without a tag/);
    const luks = await img2vm(
      [
        `oci-archive:${image}`,
        '-o',
        join(tmp, 'x.qcow2'),
        '--seed',
        's',
        '--cache-to',
        `${host}/c`,
        '--luks-password',
        'p',
      ],
      { env: NO_DAEMON },
    );
    expect(luks.exitCode).toBe(2);
    expect(luks.stderr).toMatch(/--cache-to does not go with a LUKS2 root/);
    expect(luks.stderr).not.toContain(' p ');
  });
});

describe('--push of a plain disk', () => {
  it('is an OCI artifact with the disk as its one layer, which skopeo reads and copies out', async () => {
    const ref = `${host}/ci/disk:1`;
    const m = await onMachine('push', ['--push', ref]);
    const raw = await execa('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
    const manifest = JSON.parse(raw.stdout) as {
      artifactType: string;
      layers: { mediaType: string; digest: string; annotations: Record<string, string> }[];
      annotations: Record<string, string>;
    };
    expect(manifest.artifactType).toBe('application/vnd.img2vm.disk.v1');
    expect(manifest.layers).toHaveLength(1);
    expect(manifest.layers[0]).toMatchObject({
      mediaType: 'application/vnd.img2vm.disk.layer.v1.qcow2',
      digest: `sha256:${await sha256(m.out)}`,
      annotations: { 'org.opencontainers.image.title': 'disk.qcow2' },
    });
    expect(manifest.annotations['org.img2vm.disk.key']).toBe(m.json.disk!.key);
    // Another client copies the artifact out whole: its layer is the disk.
    const layout = join(tmp, 'copied');
    await execa('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:disk`]);
    expect(await sha256(join(layout, 'blobs', 'sha256', manifest.layers[0]!.digest.slice(7)))).toBe(
      await sha256(m.out),
    );
    await writeFile(join(tmp, 'done'), '');
  });
});
