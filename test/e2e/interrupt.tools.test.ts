// Interrupts at every stage, timed by the pipeline's own test hook (IMG2VM_TEST_HOOK), not by sleeping: the signal's
// exit code, no output (an earlier file untouched), no temporary file, container, bundle, mount or child process, and
// a rerun that succeeds from the valid cache. Also: a signal after the rename, and what a SIGKILLed run leaves.
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuiltImage } from '../../fixtures/hostile/images.js';
import { writeOciArchive } from '../../src/build/oci-archive-out.js';
import { openSource } from '../../src/source/index.js';
import { debianFixture, dockerBuild, img2vm, sh, startRegistry } from './helpers.js';
import {
  CountingProxy,
  dockerContainersFrom,
  entries,
  interruptAt,
  lastError,
  lightImage,
  mountsUnder,
  processesNaming,
  pushBuilt,
  runcContainers,
  signalCode,
  testContext,
  writeArchive,
  type Interrupted,
} from './robust-helpers.js';

const DEBIAN = 'img2vm-e2e:bookworm';
const FRESH = 'img2vm-e2e-interrupt:fresh';
const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };
const EARLIER = 'an earlier file at this path, which an interrupted run must not touch\n';

let tmp: string;
let light: BuiltImage;
let archive: string;
let registry: { host: string; process: ReturnType<typeof execa> };
let proxy: CountingProxy;
let debianId: string;
let debianOci: string;

interface Scenario {
  env: Record<string, string>;
  work: string;
  out: string;
  outDir: string;
  xdg: string;
}

/** A private TMPDIR, cache and output directory (holding an earlier file at the output's path). */
function scenario(name: string, ext = 'img', extra: Record<string, string> = {}): Scenario {
  const work = join(tmp, `${name}-tmp`);
  const outDir = join(tmp, `${name}-out`);
  const xdg = join(tmp, `${name}-xdg`);
  mkdirSync(work, { recursive: true });
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, `disk.${ext}`);
  writeFileSync(out, EARLIER);
  return { env: { TMPDIR: work, XDG_CACHE_HOME: xdg, ...extra }, work, out, outDir, xdg };
}

/** Everything the issue says an interrupted run must not leave. */
async function expectInterrupted(r: Interrupted, s: Scenario, signal: NodeJS.Signals, stage: string): Promise<void> {
  expect(r.exitCode, r.stderr).toBe(signalCode(signal));
  // The step stopped where it was: a step that ignored the abort would run to its end first.
  expect(r.stderr, 'the interrupted stage ran to its end').not.toMatch(new RegExp(`^\\[${stage}\\] done`, 'm'));
  const e = lastError(r.stderr);
  expect(e.message).toBe(`interrupted by ${signal}`);
  expect(e.hint).toBe('nothing was written; temporary files were removed');
  expect(readFileSync(s.out, 'utf8'), 'the earlier file at -o was changed').toBe(EARLIER);
  expect(entries(s.outDir), 'temporary files beside the output').toEqual(['disk.' + s.out.split('.').pop()]);
  expect(entries(s.work), 'files left in TMPDIR').toEqual([]);
  expect(mountsUnder(tmp)).toEqual([]);
  expect(await processesNaming([s.work, s.outDir])).toEqual([]);
  expect(await runcContainers(r.pid, s.work)).toEqual([]);
}

/** A rerun without the hook succeeds and replaces the earlier file. */
async function rerun(args: string[], s: Scenario): Promise<void> {
  const r = await img2vm(args, { env: s.env });
  expect(r.exitCode, r.all).toBe(0);
  expect(readFileSync(s.out).subarray(0, EARLIER.length).toString()).not.toBe(EARLIER);
  expect(entries(s.work)).toEqual([]);
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'img2vm-interrupt-'));
  light = await lightImage();
  archive = join(tmp, 'light.tar');
  await writeArchive(light, archive);
  registry = await startRegistry(join(tmp, 'registry'));
  proxy = new CountingProxy(registry.host);
  await proxy.start();
  await pushBuilt(light, `${registry.host}/e2e/light:v1`, tmp);
  // The builders' base: the debootstrap fixture in the daemon, and the same image as an oci-archive for runc.
  await debianFixture(DEBIAN);
  // A base of its own for the docker build, so the daemon has no cached guest build of it.
  await dockerBuild(FRESH, `FROM ${DEBIAN}\nRUN echo ${process.pid}-${Date.now()} > /etc/img2vm-interrupt-test\n`);
  debianId = (await sh('docker', ['image', 'inspect', '--format', '{{.Id}}', FRESH])).stdout.trim();
  const saved = join(tmp, 'debian-save.tar');
  await sh('docker', ['save', '-o', saved, DEBIAN]);
  const ctx = testContext(tmp);
  const img = await openSource(`docker-archive:${saved}`, ctx);
  debianOci = join(tmp, 'debian-oci.tar');
  await writeOciArchive(img, debianOci, 'bookworm', tmp, ctx.signal);
  await ctx.scope.close();
  rmSync(saved);
}, 20 * 60_000);

afterAll(async () => {
  await execa('docker', ['rmi', '-f', FRESH], { reject: false });
  await proxy?.stop();
  registry?.process.kill('SIGTERM');
  await registry?.process;
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('an interrupt at each stage leaves nothing, and a rerun succeeds', () => {
  it('pulling from a registry (a blob half in the cache): SIGINT → 130; the rerun fetches only what was not complete', async () => {
    const s = scenario('pull');
    const args = [`docker://${proxy.host}/e2e/light:v1`, '-o', s.out, '--raw', '--boot', 'bios'];
    const r = await interruptAt('during:source/fetch-blob', args, { ...s.env, ...NO_DAEMON });
    await expectInterrupted(r, s, 'SIGINT', 'source');
    // No partial blob, no lock and no holder outlives the run.
    expect(entries(join(s.xdg, 'img2vm', 'blobs', 'sha256')).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(entries(join(s.xdg, 'img2vm', 'tmp'))).toEqual([]);
    expect(entries(join(s.xdg, 'img2vm', 'locks'))).toEqual([]);
    expect(entries(join(s.xdg, 'img2vm', 'holders'))).toEqual([]);
    const before = new Map([light.config, ...light.layers].map((b) => [b.digest, proxy.blobGets(b.digest)]));
    const cached = new Set(entries(join(s.xdg, 'img2vm', 'blobs', 'sha256')));
    await rerun(args, s);
    for (const b of [light.config, ...light.layers]) {
      // What was complete in the cache is used again; only the rest is fetched, once.
      expect(proxy.blobGets(b.digest) - before.get(b.digest)!, b.digest).toBe(cached.has(b.digest.slice(7)) ? 0 : 1);
    }
  });

  it('reading an image archive: SIGTERM → 143', async () => {
    const s = scenario('archive');
    const args = [`oci-archive:${archive}`, '-o', s.out, '--raw', '--boot', 'bios'];
    const r = await interruptAt('during:source/archive', args, { ...s.env, ...NO_DAEMON }, 'SIGTERM');
    await expectInterrupted(r, s, 'SIGTERM', 'source');
    await rerun(args, s);
  });

  it('building the guest with docker, a RUN step in its container: SIGINT → 130, no container left (docker ps -a)', async () => {
    const s = scenario('docker-build', 'qcow2');
    const args = [`docker-daemon:${FRESH}`, '-o', s.out, '--init', 'distro', '--builder', 'docker', '--boot', 'bios'];
    const r = await interruptAt('during:guest/build-step', args, s.env);
    await expectInterrupted(r, s, 'SIGINT', 'guest');
    expect(await dockerContainersFrom(debianId)).toEqual([]);
  });

  it('building the guest with runc, a RUN step in its container: SIGHUP → 129, no runc container or bundle left', async () => {
    const s = scenario('runc-build', 'qcow2');
    const args = [
      `oci-archive:${debianOci}:bookworm`,
      '-o',
      s.out,
      '--init',
      'distro',
      '--builder',
      'runc',
      '--boot',
      'bios',
    ];
    const r = await interruptAt('during:guest/build-step', args, { ...s.env, ...NO_DAEMON }, 'SIGHUP');
    await expectInterrupted(r, s, 'SIGHUP', 'guest');
    expect(entries(join(s.xdg, 'img2vm', 'builds', 'runc'))).toEqual([]);
    expect(entries(join(s.xdg, 'img2vm', 'tmp'))).toEqual([]);
  });

  it('flattening a layer into the disk: SIGINT → 130', async () => {
    const s = scenario('flatten', 'qcow2');
    const args = [`oci-archive:${archive}`, '-o', s.out, '--raw', '--boot', 'bios'];
    const r = await interruptAt('during:rootfs/flatten', args, { ...s.env, ...NO_DAEMON });
    await expectInterrupted(r, s, 'SIGINT', 'rootfs');
    await rerun(args, s);
  });

  it('writing the disk (before the root file system): SIGTERM → 143', async () => {
    const s = scenario('disk');
    const args = [`oci-archive:${archive}`, '-o', s.out, '--raw', '--boot', 'bios'];
    const r = await interruptAt('before:disk/ext4', args, { ...s.env, ...NO_DAEMON }, 'SIGTERM');
    await expectInterrupted(r, s, 'SIGTERM', 'disk');
    await rerun(args, s);
  });

  it('converting with qemu-img (vmdk): SIGINT → 130, qemu-img stopped', async () => {
    const s = scenario('vmdk', 'vmdk');
    const args = [`oci-archive:${archive}`, '-o', s.out, '--raw', '--boot', 'bios'];
    const r = await interruptAt('during:output/convert', args, { ...s.env, ...NO_DAEMON });
    await expectInterrupted(r, s, 'SIGINT', 'output');
    await rerun(args, s);
  });

  it('pushing a containerDisk (a blob uploaded, no tag yet): SIGINT → 130, the tag never appears', async () => {
    const s = scenario('push');
    const ref = `${registry.host}/e2e/pushed:v1`;
    const args = [`oci-archive:${archive}`, '--push', ref, '--raw', '--boot', 'bios'];
    const r = await interruptAt('during:output/push', args, { ...s.env, ...NO_DAEMON });
    await expectInterrupted(r, s, 'SIGINT', 'output');
    const head = await fetch(`http://${registry.host}/v2/e2e/pushed/manifests/v1`, { method: 'HEAD' });
    expect(head.status).toBe(404);
    const again = await img2vm(args, { env: s.env });
    expect(again.exitCode, again.all).toBe(0);
    expect(
      (
        await fetch(`http://${registry.host}/v2/e2e/pushed/manifests/v1`, {
          method: 'HEAD',
          headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
        })
      ).status,
    ).toBe(200);
  });
});

describe('interrupts that come too late, or too hard', () => {
  it('a signal after the output was renamed into place says that the output exists', async () => {
    const s = scenario('late');
    const r = await interruptAt(
      'after:output/rename',
      [`oci-archive:${archive}`, '-o', s.out, '--raw', '--boot', 'bios'],
      { ...s.env, ...NO_DAEMON },
    );
    expect(r.exitCode, r.stderr).toBe(130);
    const e = lastError(r.stderr);
    expect(e.message).toBe(`interrupted by SIGINT after ${s.out} was written`);
    expect(e.hint).toBe('that output is complete and stays; temporary files were removed');
    expect(readFileSync(s.out).subarray(0, EARLIER.length).toString()).not.toBe(EARLIER);
    const parts = JSON.parse((await sh('sfdisk', ['--json', s.out])).stdout) as {
      partitiontable: { partitions: unknown[] };
    };
    expect(parts.partitiontable.partitions.length).toBeGreaterThan(0);
    expect(entries(s.outDir)).toEqual(['disk.img']);
    expect(entries(s.work)).toEqual([]);
  });

  it("SIGKILL leaves a work directory and a temporary output; the next run sweeps them (and no live run's)", async () => {
    const s = scenario('kill');
    const args = [`oci-archive:${archive}`, '-o', s.out, '--raw', '--boot', 'bios'];
    const r = await interruptAt('before:disk/ext4', args, { ...s.env, ...NO_DAEMON }, 'SIGKILL');
    expect(r.signal).toBe('SIGKILL');
    const leftWork = entries(s.work);
    const leftOut = entries(s.outDir).filter((n) => n !== 'disk.img');
    expect(leftWork).toEqual([expect.stringMatching(new RegExp(`^img2vm-${r.pid}\\.[0-9a-f]{8}-`))]);
    expect(leftOut).toEqual([
      expect.stringMatching(new RegExp(`^\\.disk\\.img\\.img2vm-${r.pid}\\.[0-9a-f]{8}\\.tmp$`)),
    ]);
    // Leftovers named for a live process (this one) stay.
    const live = `img2vm-${process.pid}.${leftWork[0]!.split('.')[1]!.slice(0, 8)}-keepme`;
    mkdirSync(join(s.work, live));
    const again = await img2vm(args, { env: s.env });
    expect(again.exitCode, again.all).toBe(0);
    expect(entries(s.work)).toEqual([live]);
    expect(entries(s.outDir)).toEqual(['disk.img']);
    expect(readFileSync(s.out).subarray(0, EARLIER.length).toString()).not.toBe(EARLIER);
  });
});
