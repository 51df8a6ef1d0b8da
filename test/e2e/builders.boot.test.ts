// The daemonless builders end to end: the Debian bookworm fixture as an oci-archive, no Docker daemon reachable, built with runc and with podman, booted to the readiness marker; cached second runs; nothing left after success, failure or SIGINT.
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../src/core/context.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { writeOciArchive } from '../../src/build/oci-archive-out.js';
import { ownerOf } from '../../src/build/runtime-spec.js';
import { sha256 } from '../../src/source/digest.js';
import type { SourceImage } from '../../src/source/image.js';
import { openSource } from '../../src/source/index.js';
import { layerOf } from '../../fixtures/oci.js';
import { BIN, debianFixture, img2vm, sh } from './helpers.js';

const FIXTURE = 'img2vm-demo:bookworm';
const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };

let tmp: string;
let oci: string;
let broken: string;
let probe: string;
let podmanEnv: Record<string, string>;
let baseId: string;
const measured: string[] = [];

interface Result {
  guestBuildCached: boolean;
  guestImage: string;
  distribution: string;
  kernelVersion: string;
  timings: Record<string, number>;
}

/** Asks the kernel for a user namespace and for the session keyring (keyctl is 250 on x86-64, 219 on arm64), then fails the step. */
const SECCOMP_PROBE = `#!/bin/sh
if unshare -U true; then echo "probe: unshare -U allowed"; else echo "probe: unshare -U refused"; fi
perl -MConfig -e 'my $r = syscall($Config{archname} =~ /aarch64/ ? 219 : 250, 0, -3, 0); print "probe: keyctl ", ($r < 0 ? "refused ($!)" : "allowed"), "\\n"'
exit 3
`;

/** A fresh cache and work directory for one conversion scenario. */
function scenario(
  name: string,
  extra: Record<string, string> = {},
): { env: Record<string, string>; work: string; xdg: string } {
  const work = join(tmp, `${name}-tmp`);
  const xdg = join(tmp, `${name}-xdg`);
  mkdirSync(work, { recursive: true });
  return { env: { ...NO_DAEMON, XDG_CACHE_HOME: xdg, TMPDIR: work, ...extra }, work, xdg };
}

async function convert(
  disk: string,
  builder: string,
  env: Record<string, string>,
  source = `oci-archive:${oci}:bookworm`,
): Promise<Result> {
  const r = await img2vm([source, '-o', disk, '--builder', builder, '--boot', 'bios', '--json'], { env });
  expect(r.exitCode, r.all).toBe(0);
  return JSON.parse(r.stdout) as Result;
}

async function bootsToMarker(disk: string): Promise<void> {
  const r = await img2vm(['test', disk, '--timeout', '300', '--json']);
  expect(r.exitCode, r.all).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ passed: true, matched: 'marker' });
}

/** img2vm's runc containers (any owner): none may outlive a run. */
async function runcContainers(): Promise<string[]> {
  const r = await sh('runc', ['list', '--format', 'json']);
  const list = (JSON.parse(r.stdout || 'null') as { id: string }[] | null) ?? [];
  return list.map((c) => c.id).filter((id) => id.startsWith('img2vm-') || id.startsWith('buildah-'));
}

/** A directory's entries; none when it was never made. */
function listOrNone(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function mountsUnder(dir: string): Promise<string[]> {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[1]?.startsWith(dir));
}

async function expectNothingLeft(work: string): Promise<void> {
  expect(await runcContainers()).toEqual([]);
  expect(readdirSync(work)).toEqual([]);
  expect(await mountsUnder(work)).toEqual([]);
}

/** A podman storage of the tests' own, so nothing of anyone else's is used or removed. */
function podmanStorage(name: string): Record<string, string> {
  const conf = join(tmp, `${name}-storage.conf`);
  writeFileSync(
    conf,
    `[storage]\ndriver = "overlay"\ngraphroot = "${join(tmp, name, 'graph')}"\nrunroot = "${join(tmp, name, 'run')}"\n`,
  );
  storages.push(conf);
  return { CONTAINERS_STORAGE_CONF: conf };
}
const storages: string[] = [];

/** Starts a conversion, waits until a step of its build runs, interrupts it, and returns how it ended. */
async function interruptMidBuild(
  builder: string,
  env: Record<string, string>,
  disk: string,
): Promise<{ exitCode: number | undefined; stderr: string }> {
  const child = execa(BIN, [`oci-archive:${oci}:bookworm`, '-o', disk, '--builder', builder, '--boot', 'bios'], {
    env: { CI: 'true', ...env },
    reject: false,
  });
  let seen = false;
  for (let i = 0; i < 1200 && !seen; i++) {
    const r = await execa('runc', ['list', '--format', 'json'], { reject: false });
    const ids = ((JSON.parse(r.stdout || 'null') as { id: string; bundle: string }[] | null) ?? []).filter(
      (c) => ownerOf(c.id) === child.pid || c.bundle.startsWith(env.TMPDIR!),
    );
    seen = ids.length > 0;
    if (!seen) await new Promise((res) => setTimeout(res, 250));
  }
  expect(seen, 'a build step never started').toBe(true);
  child.kill('SIGINT');
  const r = await child;
  return { exitCode: r.exitCode, stderr: String(r.stderr) };
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the runc and podman builders need root: run the e2e tests as root');
  tmp = mkdtempSync(join(tmpdir(), 'img2vm-builders-e2e-'));
  // The fixture is made with docker; the conversions below never reach it.
  await debianFixture(FIXTURE);
  const saved = join(tmp, 'debian-save.tar');
  await sh('docker', ['save', '-o', saved, FIXTURE]);
  const ctx: RunContext = {
    work: tmp,
    signal: new AbortController().signal,
    sink: () => {},
    scope: new Scope(),
    random: createRandom('e2e'),
  };
  const img = await openSource(`docker-archive:${saved}`, ctx);
  oci = join(tmp, 'debian-oci.tar');
  expect(await writeOciArchive(img, oci, 'bookworm', tmp, ctx.signal)).toBe(img.id);
  /** The image with one more layer, as an oci-archive. */
  const withLayer = async (layer: Buffer, name: string, dest: string): Promise<string> => {
    const config = {
      ...img.config,
      rootfs: { type: 'layers', diff_ids: [...(img.config.rootfs?.diff_ids ?? []), sha256(layer)] },
    };
    const configBytes = Buffer.from(JSON.stringify(config));
    const extended: SourceImage = {
      ...img,
      id: sha256(configBytes),
      config,
      configBytes,
      layers: [
        ...img.layers,
        {
          name,
          digest: sha256(layer),
          size: layer.length,
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          open: async () => (await import('node:stream')).Readable.from([layer]),
        },
      ],
    };
    await writeOciArchive(extended, dest, 'bookworm', tmp, ctx.signal);
    return dest;
  };
  // The same image with an apt-get that fails: the build must fail and leave nothing.
  broken = await withLayer(
    await layerOf([
      { name: 'usr/bin/apt-get', mode: 0o755, content: '#!/bin/sh\necho "apt-get: broken on purpose" >&2\nexit 3\n' },
    ]),
    'broken apt-get',
    join(tmp, 'broken-oci.tar'),
  );
  // And with an apt-get that asks for what the runc builder's seccomp filter refuses, and says what it got.
  probe = await withLayer(
    await layerOf([{ name: 'usr/bin/apt-get', mode: 0o755, content: SECCOMP_PROBE }]),
    'seccomp probe',
    join(tmp, 'probe-oci.tar'),
  );
  await ctx.scope.close();
  baseId = img.id;
  rmSync(saved);
  for (const d of readdirSync(tmp)) if (d.startsWith('source-')) rmSync(join(tmp, d), { recursive: true, force: true });
  podmanEnv = podmanStorage('podman');
}, 30 * 60_000);

afterAll(async () => {
  if (measured.length) console.log(`guest stage (ms):\n${measured.join('\n')}`);
  for (const conf of storages)
    await execa('podman', ['rmi', '--all', '--force'], { env: { CONTAINERS_STORAGE_CONF: conf }, reject: false });
  // containers/storage keeps its overlay directory bind-mounted onto itself.
  const mounts = (await mountsUnder(tmp)).map((m) => m.split(' ')[1]!).sort((a, b) => b.length - a.length);
  for (const m of mounts) await execa('umount', [m], { reject: false });
  rmSync(tmp, { recursive: true, force: true });
});

describe('the runc builder, with no daemon', () => {
  it('builds the Debian guest from an oci-archive into a disk that boots to the readiness marker; the second conversion is cached', async () => {
    const { env, work, xdg } = scenario('runc');
    const cold = await convert(join(tmp, 'runc-1.qcow2'), 'runc', env);
    expect(cold).toMatchObject({
      guestBuildCached: false,
      guestImage: expect.stringMatching(/^runc:[0-9a-f]{32}$/),
      distribution: expect.stringMatching(/Debian GNU\/Linux 12/),
      kernelVersion: expect.stringMatching(/^6\.1\./),
    });
    await expectNothingLeft(work);
    const entries = readdirSync(join(xdg, 'img2vm', 'builds', 'runc'));
    expect(entries).toEqual([expect.stringMatching(new RegExp(`^${cold.guestImage.slice(5)}[0-9a-f]{32}$`))]);
    await bootsToMarker(join(tmp, 'runc-1.qcow2'));

    const warm = await convert(join(tmp, 'runc-2.qcow2'), 'runc', env);
    expect(warm).toMatchObject({
      guestBuildCached: true,
      guestImage: cold.guestImage,
      kernelVersion: cold.kernelVersion,
    });
    await expectNothingLeft(work);
    measured.push(`runc cold ${cold.timings.guest}, cached ${warm.timings.guest}`);
    // The holder files of both runs are gone with them.
    expect(listOrNone(join(xdg, 'img2vm', 'holders'))).toEqual([]);
  });

  it('SIGINT mid-build: exit 130, no container, bundle, mount or work directory left, nothing cached', async () => {
    const { env, work, xdg } = scenario('runc-int');
    const r = await interruptMidBuild('runc', env, join(tmp, 'runc-int.qcow2'));
    expect(r.exitCode, r.stderr).toBe(130);
    await expectNothingLeft(work);
    expect(listOrNone(join(xdg, 'img2vm', 'builds', 'runc'))).toEqual([]);
    expect(listOrNone(join(xdg, 'img2vm', 'tmp'))).toEqual([]);
    expect(existsSync(join(tmp, 'runc-int.qcow2'))).toBe(false);
  });

  it('a failing step fails the conversion with its output, and leaves nothing', async () => {
    const { env, work, xdg } = scenario('runc-fail');
    const r = await img2vm(
      [`oci-archive:${broken}:bookworm`, '-o', join(tmp, 'runc-fail.qcow2'), '--builder', 'runc', '--boot', 'bios'],
      { env },
    );
    expect(r.exitCode, r.all).toBe(9);
    expect(r.stderr).toMatch(/guest build failed: the step at line \d+ of the template .* exited with 3/);
    expect(r.stderr).toMatch(/apt-get: broken on purpose/);
    await expectNothingLeft(work);
    expect(listOrNone(join(xdg, 'img2vm', 'builds', 'runc'))).toEqual([]);
    expect(listOrNone(join(xdg, 'img2vm', 'tmp'))).toEqual([]);
  });
});

describe('the runc builder seccomp filter', () => {
  it('a step that asks for a user namespace or the kernel keyring is refused (EPERM), and the Debian build fails with what it got', async () => {
    const { env, work } = scenario('runc-seccomp');
    const r = await img2vm(
      [`oci-archive:${probe}:bookworm`, '-o', join(tmp, 'runc-seccomp.qcow2'), '--builder', 'runc', '--boot', 'bios'],
      { env },
    );
    expect(r.exitCode, r.all).toBe(9);
    expect(r.stderr).toContain('probe: unshare -U refused');
    expect(r.stderr).toMatch(/unshare.*Operation not permitted/);
    expect(r.stderr).toContain('probe: keyctl refused (Operation not permitted)');
    await expectNothingLeft(work);
  });
});

describe('Debian trixie', () => {
  it('boots to the readiness marker built with the docker builder, and with runc from an oci-archive with no daemon', async () => {
    const image = await debianFixture('img2vm-e2e:trixie', 'trixie');
    const viaDocker = join(tmp, 'trixie-docker.qcow2');
    const d = await img2vm([image, '-o', viaDocker, '--builder', 'docker', '--boot', 'bios', '--json']);
    expect(d.exitCode, d.all).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({
      distribution: expect.stringMatching(/Debian GNU\/Linux 13/),
      kernelVersion: expect.stringMatching(/^6\.12\./),
    });
    await bootsToMarker(viaDocker);

    const saved = join(tmp, 'trixie-save.tar');
    await sh('docker', ['save', '-o', saved, image]);
    const ctx: RunContext = {
      work: tmp,
      signal: new AbortController().signal,
      sink: () => {},
      scope: new Scope(),
      random: createRandom('e2e'),
    };
    const trixieOci = join(tmp, 'trixie-oci.tar');
    await writeOciArchive(await openSource(`docker-archive:${saved}`, ctx), trixieOci, 'trixie', tmp, ctx.signal);
    await ctx.scope.close();
    rmSync(saved);
    const { env } = scenario('trixie-runc');
    const viaRunc = join(tmp, 'trixie-runc.qcow2');
    const r = await convert(viaRunc, 'runc', env, `oci-archive:${trixieOci}:trixie`);
    expect(r).toMatchObject({ guestBuildCached: false, distribution: expect.stringMatching(/Debian GNU\/Linux 13/) });
    await bootsToMarker(viaRunc);
  });
});

describe('the podman builder, with no daemon', () => {
  it('podman works here', async () => {
    const r = await execa('podman', ['info', '--format', 'json'], { env: podmanEnv, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it('builds the Debian guest from an oci-archive into a disk that boots to the readiness marker; the second conversion is cached', async () => {
    const { env, work } = scenario('podman', podmanEnv);
    const cold = await convert(join(tmp, 'podman-1.qcow2'), 'podman', env);
    expect(cold).toMatchObject({
      guestBuildCached: false,
      guestImage: expect.stringMatching(/^localhost\/img2vm-cache:[0-9a-f]{32}$/),
      kernelVersion: expect.stringMatching(/^6\.1\./),
    });
    await expectNothingLeft(work);
    await bootsToMarker(join(tmp, 'podman-1.qcow2'));
    const warm = await convert(join(tmp, 'podman-2.qcow2'), 'podman', env);
    expect(warm).toMatchObject({ guestBuildCached: true, guestImage: cold.guestImage });
    await expectNothingLeft(work);
    measured.push(`podman cold ${cold.timings.guest}, cached ${warm.timings.guest}`);
    const ps = await execa('podman', ['ps', '--all', '--external', '--quiet'], { env: podmanEnv });
    expect(ps.stdout.trim()).toBe('');
    const images = (
      await execa('podman', ['images', '--format', '{{.Repository}}:{{.Tag}}'], { env: podmanEnv })
    ).stdout
      .split('\n')
      .sort();
    expect(images).toEqual([cold.guestImage, `localhost/img2vm-source:${baseId.slice(7, 23)}`].sort());
  });

  it('SIGINT mid-build: exit 130, podman cleans up its working container and step', async () => {
    // A storage of its own: the build above is cached in the other one.
    const storage = podmanStorage('podman-int');
    const { env, work } = scenario('podman-int', storage);
    const r = await interruptMidBuild('podman', env, join(tmp, 'podman-int.qcow2'));
    expect(r.exitCode, r.stderr).toBe(130);
    await expectNothingLeft(work);
    const ps = await execa('podman', ['ps', '--all', '--external', '--quiet'], { env: storage });
    expect(ps.stdout.trim()).toBe('');
    const images = (
      await execa('podman', ['images', '--format', '{{.Repository}}:{{.Tag}}'], { env: storage })
    ).stdout.split('\n');
    expect(images).toEqual([`localhost/img2vm-source:${baseId.slice(7, 23)}`]);
  });
});
