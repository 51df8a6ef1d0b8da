// pushContainerDisk against Debian's docker-registry on 127.0.0.1, pulled back with docker: /disk/disk.qcow2 intact and owned 107:107.
import { execa, type ResultPromise } from 'execa';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../src/core/context.js';
import type { Img2vmEvent } from '../../src/core/events.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { pushContainerDisk } from '../../src/output/containerdisk.js';
import { debianFixture, img2vm, REPO, sh, startRegistry } from './helpers.js';

let tmp: string;
let ctx: RunContext;
const events: Img2vmEvent[] = [];
let registry: ResultPromise | undefined;
let host: string; // 127.0.0.1:PORT
let qcow2: string;
const images: string[] = [];
const containers: string[] = [];

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-push-'));
  await mkdir(join(tmp, 'work'));
  ctx = {
    work: join(tmp, 'work'),
    signal: new AbortController().signal,
    sink: (e) => events.push(e),
    scope: new Scope(),
    random: createRandom('e2e-push'),
  };
  await sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);

  ({ host, process: registry } = await startRegistry(join(tmp, 'registry')));

  qcow2 = join(tmp, 'x.qcow2');
  await sh('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '64M']);
}, 10 * 60_000);

afterAll(async () => {
  for (const c of containers) await execa('docker', ['rm', '-f', c], { reject: false });
  for (const t of images) await execa('docker', ['rmi', '-f', t], { reject: false });
  if (registry) {
    registry.kill('SIGTERM');
    await registry;
  }
  await ctx?.scope.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('pushContainerDisk to docker-registry', () => {
  it('pushes an image that docker pulls back with /disk/disk.qcow2 owned 107:107', async () => {
    const ref = `${host}/kubevirt/fake-disk:v1`;
    const r = await pushContainerDisk(qcow2, ref, ctx, 0, { env: { HOME: tmp } });
    expect(r.ref).toBe(ref);
    expect(r.digest).toMatch(/^sha256:[a-f0-9]{64}$/);

    // The registry serves the manifest under the tag with the digest pushOciImage returned.
    const head = await fetch(`http://${host}/v2/kubevirt/fake-disk/manifests/v1`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(head.status).toBe(200);
    expect(head.headers.get('docker-content-digest')).toBe(r.digest);

    images.push(ref);
    await sh('docker', ['pull', '-q', ref]);
    const inspect = JSON.parse((await sh('docker', ['image', 'inspect', ref])).stdout) as {
      RepoDigests: string[];
      Architecture: string;
      Os: string;
      Config: { Labels: Record<string, string> };
      RootFS: { Layers: string[] };
    }[];
    expect(inspect).toHaveLength(1);
    const img = inspect[0]!;
    expect(img.RepoDigests).toContain(`${host}/kubevirt/fake-disk@${r.digest}`);
    expect([img.Os, img.Architecture]).toEqual(['linux', 'amd64']);
    expect(img.Config.Labels['org.img2vm.kind']).toBe('containerdisk');
    expect(img.RootFS.Layers).toHaveLength(1);

    // An image without a command needs one to create a container; it never runs.
    const id = (await sh('docker', ['create', ref, '/nonexistent'])).stdout.trim();
    containers.push(id);
    const out = join(tmp, 'pulled.qcow2');
    await sh('docker', ['cp', `${id}:/disk/disk.qcow2`, out]);
    expect(sha256(await readFile(out))).toBe(sha256(await readFile(qcow2)));
    const info = JSON.parse((await sh('qemu-img', ['info', '--output=json', out])).stdout) as {
      format: string;
      'virtual-size': number;
    };
    expect(info).toMatchObject({ format: 'qcow2', 'virtual-size': 64 * 1024 * 1024 });

    const listing = await execa('bash', ['-o', 'pipefail', '-c', `docker export ${id} | tar -tv --numeric-owner`], {
      all: true,
    });
    expect(listing.exitCode).toBe(0);
    const lines = listing.stdout.split('\n').filter((l) => /\sdisk\/(disk\.qcow2)?$/.test(l));
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatch(/^\S+ 107\/107 /);
    expect(lines.find((l) => l.endsWith('disk/disk.qcow2'))).toMatch(/^-r--r--r-- /);
  });

  it('pushes a second tag without uploading any blob again', async () => {
    events.length = 0;
    const r = await pushContainerDisk(qcow2, `${host}/kubevirt/fake-disk:v2`, ctx, 0, { env: { HOME: tmp } });
    const logs = events.flatMap((e) => (e.type === 'log' ? [e.message] : []));
    expect(logs.filter((m) => /already in/.test(m))).toHaveLength(2);
    expect(logs.some((m) => /: pushed /.test(m))).toBe(false);
    const head = await fetch(`http://${host}/v2/kubevirt/fake-disk/manifests/v2`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(head.headers.get('docker-content-digest')).toBe(r.digest);
  });
});

describe('img2vm --format containerdisk --push', () => {
  it('writes the archive and pushes the same image, which docker pulls', async () => {
    await debianFixture('img2vm-e2e:bookworm');
    const ref = `${host}/e2e/cli-disk:1`;
    const out = join(tmp, 'cli-cd.tar');
    const r = await img2vm(['img2vm-e2e:bookworm', '-o', out, '--format', 'containerdisk', '--push', ref, '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.pushed.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    await sh('docker', ['pull', '-q', ref]);
    const inspect = JSON.parse((await sh('docker', ['image', 'inspect', ref])).stdout)[0];
    expect(inspect.RepoDigests).toContain(`${ref.replace(/:1$/, '')}@${j.pushed.digest}`);
    await sh('docker', ['rmi', '-f', ref]);
  });

  it('with --push alone pushes the containerDisk and writes no file', async () => {
    const ref = `${host}/e2e/push-only:1`;
    const before = (await readdir(tmp)).sort();
    const r = await img2vm(['img2vm-e2e:bookworm', '--push', ref, '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ output: null, format: 'containerdisk' });
    expect((await readdir(tmp)).sort()).toEqual(before);
    const head = await fetch(`http://${host}/v2/e2e/push-only/manifests/1`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    expect(head.headers.get('docker-content-digest')).toBe(j.pushed.digest);
  });

  it('refuses no -o without --push, naming both ways out', async () => {
    const r = await img2vm(['img2vm-e2e:bookworm']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/no output given[\s\S]*-o FILE[\s\S]*--push/);
  });

  it('refuses --push of the direct-kernel output, which is not a disk', async () => {
    const r = await img2vm(['img2vm-e2e:bookworm', '-o', join(tmp, 'x.ext4'), '--push', `${host}/e2e/x:1`]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--push does not apply to --format rootfs/);
  });
});
