// Every daemonless source against the real thing: Debian's docker-registry (anonymous and htpasswd), docker save, and OCI layouts made from it, each flattening to the daemon's tree.
import { execa, type ResultPromise } from 'execa';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../src/core/context.js';
import type { Img2vmEvent } from '../../src/core/events.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { LayerFlattener } from '../../src/rootfs/layers.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { DockerClient } from '../../src/source/docker-api.js';
import type { SourceImage } from '../../src/source/image.js';
import { importToDaemon, openSource, type OpenSourceOptions } from '../../src/source/index.js';
import { buildImage, gz, imageBlobs, sha256, tarDirectory, tarOf, writeLayout } from '../../fixtures/hostile/images.js';
import {
  debianFixture,
  diffTrees,
  img2vm,
  sh,
  startRegistry as startSharedRegistry,
  treeMeta,
  type Meta,
} from './helpers.js';

const BASE = 'img2vm-e2e:bookworm';
let tmp: string;
let ctx: RunContext;
const events: Img2vmEvent[] = [];
const registries: ResultPromise[] = [];
const pushedTags: string[] = [];
const loadedImages: string[] = [];
let anon: string; // 127.0.0.1:PORT
let authed: string;
let dockerConfig: string;
let daemonTree: Map<string, Meta>;
let archive: string;
let layout: string;
let ociArchive: string;
const throughput: string[] = [];

async function startRegistry(name: string, htpasswd?: string): Promise<string> {
  const r = await startSharedRegistry(join(tmp, name), htpasswd);
  registries.push(r.process);
  return r.host;
}

async function push(registry: string, config?: string): Promise<string> {
  const tag = `${registry}/e2e/debian:bookworm`;
  await sh('docker', ['tag', BASE, tag]);
  pushedTags.push(tag);
  await sh('docker', [...(config ? ['--config', config] : []), 'push', '-q', tag]);
  return tag;
}

/** Re-packs `docker save` output (legacy format) as an OCI layout: uncompressed layers, the config as is, tagged bookworm. */
async function dockerSaveToOci(saveTar: string, dest: string): Promise<void> {
  const x = join(tmp, 'save-x');
  await mkdir(x, { recursive: true });
  await sh('tar', ['-x', '-C', x, '-f', saveTar]);
  const [m] = JSON.parse(await readFile(join(x, 'manifest.json'), 'utf8')) as { Config: string; Layers: string[] }[];
  const blobs = join(dest, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const cfg = await readFile(join(x, m!.Config));
  await writeFile(join(blobs, sha256(cfg).slice(7)), cfg);
  const layers = [];
  for (const l of m!.Layers) {
    const digest = await fileDigest(join(x, l));
    await copyFile(join(x, l), join(blobs, digest.slice(7)));
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: (await stat(join(x, l))).size });
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(cfg), size: cfg.length },
      layers,
    }),
  );
  await writeFile(join(blobs, sha256(manifest).slice(7)), manifest);
  await writeFile(join(dest, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    join(dest, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: sha256(manifest),
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': 'bookworm' },
        },
      ],
    }),
  );
  await rm(x, { recursive: true, force: true });
}

async function fileDigest(p: string): Promise<string> {
  const h = (await import('node:crypto')).createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** The image flattened as a conversion flattens it (with the transport's own corrections), as path → metadata. */
async function flattenTree(img: SourceImage, _name: string): Promise<Map<string, Meta>> {
  const f = new LayerFlattener({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });
  for (const l of img.layers) await f.applyLayer(await l.open());
  const { tree } = f.finish();
  await img.afterFlatten?.(tree, { warnLost: false });
  return treeMeta(tree);
}

function expectSameTree(tree: Map<string, Meta>): void {
  const diffs = diffTrees(daemonTree, tree, () => false);
  expect(diffs.slice(0, 20)).toEqual([]);
  expect(tree.size).toBe(daemonTree.size);
}

function opts(extra: OpenSourceOptions = {}): OpenSourceOptions {
  return { cacheDir: join(tmp, 'cache'), env: { HOME: tmp }, ...extra };
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-src-'));
  await mkdir(join(tmp, 'work'));
  ctx = {
    work: join(tmp, 'work'),
    signal: new AbortController().signal,
    sink: (e) => events.push(e),
    scope: new Scope(),
    random: createRandom('e2e'),
  };
  await debianFixture(BASE);

  anon = await startRegistry('anon');
  const htpasswd = join(tmp, 'htpasswd');
  await writeFile(htpasswd, (await sh('htpasswd', ['-Bbn', 'e2e-user', 'e2e-pass'])).stdout);
  authed = await startRegistry('authed', htpasswd);
  dockerConfig = join(tmp, 'docker-config');
  await mkdir(dockerConfig);
  await sh('docker', ['--config', dockerConfig, 'login', authed, '-u', 'e2e-user', '--password-stdin'], 'e2e-pass');
  await push(anon);
  await push(authed, dockerConfig);

  archive = join(tmp, 'debian.tar');
  await sh('docker', ['save', '-o', archive, BASE]);
  layout = join(tmp, 'layout');
  await dockerSaveToOci(archive, layout);
  ociArchive = join(tmp, 'debian-oci.tar');
  await execa('tar', ['-C', layout, '-cf', ociArchive, '.']);

  daemonTree = await flattenTree(await openSource(`docker-daemon:${BASE}`, ctx), 'daemon');
}, 20 * 60_000);

afterAll(async () => {
  for (const p of registries) p.kill('SIGTERM');
  await Promise.allSettled(registries);
  for (const t of [...pushedTags, ...loadedImages]) await execa('docker', ['rmi', '-f', t], { reject: false });
  await ctx?.scope.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
  if (throughput.length)
    console.log(`pull throughput from docker-registry on 127.0.0.1:\n  ${throughput.join('\n  ')}`);
});

describe('daemonless sources flatten to the daemon image', () => {
  it('docker:// from a local registry (cold cache), with throughput', async () => {
    const t0 = performance.now();
    const img = await openSource(`docker://${anon}/e2e/debian:bookworm`, ctx, undefined, opts());
    const s = (performance.now() - t0) / 1000;
    const bytes = img.layers.reduce((n, l) => n + (l.size ?? 0), 0);
    throughput.push(
      `cold cache: ${(bytes / 1e6).toFixed(1)} MB compressed in ${s.toFixed(2)} s = ${(bytes / 1e6 / s).toFixed(1)} MB/s (manifest, config, ${img.layers.length} layer(s), sha256-verified, fsynced)`,
    );
    expect(img.transport).toBe('docker');
    expectSameTree(await flattenTree(img, 'registry'));

    const t1 = performance.now();
    const again = await openSource(`docker://${anon}/e2e/debian:bookworm`, ctx, undefined, opts({ pull: 'always' }));
    throughput.push(
      `warm cache, --pull always (manifest fetched, blobs re-hashed from the cache): ${((performance.now() - t1) / 1000).toFixed(2)} s`,
    );
    expect(again.id).toBe(img.id);
  });

  it('a bare reference prefers the daemon, and goes to the registry with --pull always', async () => {
    const ref = `${anon}/e2e/debian:bookworm`;
    const fromDaemon = await openSource(ref, ctx, undefined, opts());
    expect(fromDaemon.transport).toBe('docker-daemon');
    expect(fromDaemon.daemonId).toBe(fromDaemon.id);
    const fromRegistry = await openSource(ref, ctx, undefined, opts({ pull: 'always', cacheDir: join(tmp, 'cache2') }));
    expect(fromRegistry.transport).toBe('docker');
    expect(fromRegistry.id).toBe(fromDaemon.id);
  });

  it('docker:// from a registry with htpasswd auth, credentials from DOCKER_CONFIG', async () => {
    const ref = `docker://${authed}/e2e/debian:bookworm`;
    await expect(openSource(ref, ctx, undefined, opts({ cacheDir: join(tmp, 'cache-auth') }))).rejects.toMatchObject({
      kind: 'imageNotFound',
      message: expect.stringMatching(/requires a login/),
    });
    const img = await openSource(
      ref,
      ctx,
      undefined,
      opts({ cacheDir: join(tmp, 'cache-auth'), env: { DOCKER_CONFIG: dockerConfig } }),
    );
    expectSameTree(await flattenTree(img, 'authed'));
  });

  it('docker-archive: from docker save', async () => {
    expectSameTree(await flattenTree(await openSource(`docker-archive:${archive}`, ctx), 'archive'));
  });

  it('oci: a layout re-packed from docker save', async () => {
    const img = await openSource(`oci:${layout}:bookworm`, ctx);
    expect(img.transport).toBe('oci');
    expectSameTree(await flattenTree(img, 'layout'));
  });

  it('oci-archive: a tar of that layout', async () => {
    const img = await openSource(`oci-archive:${ociArchive}:bookworm`, ctx);
    expect(img.transport).toBe('oci-archive');
    expectSameTree(await flattenTree(img, 'oci-archive'));
  });
});

describe('importToDaemon', () => {
  it('is a no-op for an image the daemon already has', async () => {
    const img = await openSource(`oci:${layout}:bookworm`, ctx);
    const client = new DockerClient();
    const id = await importToDaemon(img, client, ctx, { tag: 'img2vm-e2e-import:same' });
    loadedImages.push('img2vm-e2e-import:same');
    expect(id).toBe(img.id);
  });

  it('loads an image the daemon does not have, with gzip and plain layers, under the same id', async () => {
    const marker = `${Date.now()}-${Math.random()}`;
    const built = buildImage({
      layers: [
        gz(await tarOf({ 'etc/': { dir: true }, 'etc/marker': marker })),
        await tarOf({ 'hello.txt': 'hello\n' }),
      ],
    });
    const dir = join(tmp, 'gen-layout');
    await writeLayout(dir, [{ top: built.manifest, tag: 'gen' }], imageBlobs(built));
    const img = await openSource(`oci:${dir}:gen`, ctx);
    const client = new DockerClient();
    const id = await importToDaemon(img, client, ctx);
    loadedImages.push(id);
    expect(id).toBe(built.config.digest);
    const info = JSON.parse((await sh('docker', ['image', 'inspect', id])).stdout)[0];
    expect(info.RootFS.Layers).toEqual(JSON.parse(built.config.bytes.toString()).rootfs.diff_ids);
    expect(info.RepoTags).toContain(`img2vm-source:${id.slice(7, 23)}`);
    // What the daemon now holds reads back identically.
    const back = await openSource(`docker-daemon:${id}`, ctx);
    const f = new LayerFlattener({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });
    for (const l of back.layers) await f.applyLayer(await l.open());
    const { tree } = f.finish();
    expect((await tree.readFile('/etc/marker'))?.toString()).toBe(marker);
    expect((await tree.readFile('/hello.txt'))?.toString()).toBe('hello\n');
  });

  it(
    'reports a layer that went bad after it was opened as a digest mismatch, and loads nothing',
    { timeout: 120_000 },
    async () => {
      const built = buildImage({ layers: [await tarOf({ 'y.txt': `${Math.random()}`.repeat(100) })] });
      const dir = join(tmp, 'gen-bad');
      await writeLayout(dir, [{ top: built.manifest }], imageBlobs(built));
      const img = await openSource(`oci:${dir}`, ctx);
      const p = join(dir, 'blobs', 'sha256', built.layers[0]!.digest.slice(7));
      const b = await readFile(p);
      b.write('X', 600, 'latin1');
      await writeFile(p, b);
      await expect(
        importToDaemon(img, new DockerClient(), ctx, { tag: 'img2vm-e2e-import:bad' }),
      ).rejects.toMatchObject({ kind: 'badImage', message: expect.stringMatching(/does not match its digest/) });
      loadedImages.push('img2vm-e2e-import:bad');
      expect((await execa('docker', ['image', 'inspect', built.config.digest], { reject: false })).exitCode).not.toBe(
        0,
      );
    },
  );

  it('an OCI archive made in code goes through the same path', async () => {
    const built = buildImage({ layers: [gz(await tarOf({ 'x.txt': `${Math.random()}` }))] });
    const dir = join(tmp, 'gen2');
    await writeLayout(dir, [{ top: built.manifest }], imageBlobs(built));
    const file = join(tmp, 'gen2.tar');
    await writeFile(file, await tarDirectory(dir));
    const id = await importToDaemon(await openSource(`oci-archive:${file}`, ctx), new DockerClient(), ctx, {
      tag: 'img2vm-e2e-import:gen2',
    });
    loadedImages.push('img2vm-e2e-import:gen2', id);
    expect(id).toBe(built.config.digest);
  });
});

describe('the CLI with daemonless sources', () => {
  const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };

  it('converts docker://127.0.0.1:PORT/... with --raw and no daemon at all, to a disk that boots', async () => {
    // An image that already has a kernel and init: the guest image img2vm built for the fixture.
    const built = await img2vm([BASE, '-o', join(tmp, 'seed.raw'), '--boot', 'bios', '--json']);
    expect(built.exitCode, built.all).toBe(0);
    const guestImage = JSON.parse(built.stdout).guestImage as string;
    const tag = `${anon}/e2e/with-kernel:latest`;
    await sh('docker', ['tag', guestImage, tag]);
    pushedTags.push(tag);
    await sh('docker', ['push', '-q', tag]);
    const out = join(tmp, 'from-registry.qcow2');
    const r = await img2vm([`docker://${tag}`, '-o', out, '--raw', '--json'], {
      env: { ...NO_DAEMON, XDG_CACHE_HOME: join(tmp, 'xdg') },
    });
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ guestImage: null, kernelVersion: expect.stringMatching(/^6\./) });
    const t = await img2vm(['test', out, '--timeout', '300', '--json']);
    expect(t.exitCode, t.all).toBe(0);
  });

  it('without --raw and without a daemon, names the missing builder', async () => {
    const r = await img2vm(
      [`docker://${anon}/e2e/debian:bookworm`, '-o', join(tmp, 'x.qcow2'), '--init', 'distro', '--builder', 'docker'],
      { env: { ...NO_DAEMON, XDG_CACHE_HOME: join(tmp, 'xdg') } },
    );
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/needs a builder, and the docker builder's daemon is not reachable/);
  });

  it('an oci-archive goes through the same Debian guest stage as a daemon image', async () => {
    const out = join(tmp, 'from-oci.img');
    const r = await img2vm([`oci-archive:${ociArchive}:bookworm`, '-o', out, '--boot', 'bios', '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.distribution).toMatch(/Debian/);
    expect(j.kernelVersion).toMatch(/^6\./);
    await sh('e2fsck', ['-fn', `${out}?offset=${1024 * 1024}`]);
  });
});
