// examples/kubernetes-job.yaml under `podman kube play`: its pod spec as written (restricted Pod Security Standard:
// non-root, no privilege escalation, no capabilities, seccomp RuntimeDefault, a read-only root) converts an image,
// boot-tests the disk and pushes it and its cache entry to a registry on 127.0.0.1. podman 4.3 plays Pods, not Jobs,
// so the Job's pod template is played as a Pod; the test fills in only the image, the env, the work volume (the image
// archive and the kernel files, where a cluster would pull from a registry) and an empty registry-credentials volume.
import { execa, type ResultPromise } from 'execa';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { busyboxArchive, kernelFiles } from './ci-fixtures.js';
import { REPO, sh, startRegistry } from './helpers.js';

interface Container {
  image: string;
  imagePullPolicy?: string;
  env: { name: string; value: string }[];
  securityContext: Record<string, unknown>;
}
interface PodSpec {
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: ({ name: string } & Record<string, unknown>)[];
}
interface Job {
  kind: string;
  metadata: { name: string };
  spec: { template: { metadata?: Record<string, unknown>; spec: PodSpec } };
}

let tmp: string;
let registry: ResultPromise | undefined;
let host: string;
let podYaml: string;
const POD = 'img2vm-disk-e2e';

beforeAll(async () => {
  await sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);
  await sh('bash', [join(REPO, 'scripts', 'build-image.sh')]);
  // podman's storage gets the image docker built, unless it has that very image already.
  const id = (await execa('docker', ['image', 'inspect', '-f', '{{.Id}}', 'img2vm:latest'])).stdout.trim();
  const have = await execa('podman', ['image', 'inspect', '-f', '{{.Id}}', 'localhost/img2vm:latest'], {
    reject: false,
  });
  if (have.exitCode !== 0 || `sha256:${have.stdout.trim()}` !== id)
    await execa('bash', ['-c', 'docker save img2vm:latest | podman load -q']);
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-kube-'));
  ({ host, process: registry } = await startRegistry(join(tmp, 'registry')));
  const work = join(tmp, 'work');
  await mkdir(work);
  await busyboxArchive(join(work, 'image.tar'), 'hello from a restricted pod');
  await kernelFiles(join(work, 'kernel'));
  await execa('chown', ['-R', '1000:1000', work]);

  const job = parse(await readFile(join(REPO, 'examples', 'kubernetes-job.yaml'), 'utf8')) as Job;
  expect(job.kind).toBe('Job');
  const spec = job.spec.template.spec;
  const c = spec.containers[0]!;
  c.image = 'localhost/img2vm:latest';
  c.imagePullPolicy = 'Never';
  const env: Record<string, string> = {
    IMG2VM_IMAGE: 'oci-archive:/work/image.tar',
    IMG2VM_CACHE: `${host}/ci/img2vm-cache`,
    IMG2VM_DISK: `${host}/ci/disk:1`,
    IMG2VM_ARGS: '--kernel /work/kernel/vmlinuz --kernel-modules /work/kernel/modules',
  };
  c.env = c.env.map((e) => (e.name in env ? { name: e.name, value: env[e.name]! } : e));
  // The registry on 127.0.0.1 needs no credentials, and podman 4.3 fails on a missing secret even when optional.
  spec.volumes = spec.volumes.map((v) =>
    v.name === 'work'
      ? { name: 'work', hostPath: { path: work, type: 'Directory' } }
      : v.name === 'registry'
        ? { name: 'registry', emptyDir: {} }
        : v,
  );
  podYaml = join(tmp, 'pod.yaml');
  await writeFile(
    podYaml,
    stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { ...job.spec.template.metadata, name: POD }, spec }),
  );
}, 20 * 60_000);

afterAll(async () => {
  if (podYaml) await execa('podman', ['kube', 'down', podYaml], { reject: false });
  if (registry) {
    registry.kill('SIGTERM');
    await registry;
  }
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('examples/kubernetes-job.yaml', () => {
  it('meets the restricted Pod Security Standard as written', async () => {
    const job = parse(await readFile(join(REPO, 'examples', 'kubernetes-job.yaml'), 'utf8')) as Job;
    const spec = job.spec.template.spec;
    expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    for (const c of spec.containers)
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
    // Restricted allows only these volume types (no hostPath).
    for (const v of spec.volumes)
      expect(Object.keys(v).filter((k) => k !== 'name')).toEqual([
        expect.stringMatching(/^(emptyDir|secret|configMap|persistentVolumeClaim|projected|ephemeral)$/),
      ]);
  });

  it('converts, boot-tests and pushes the disk under podman kube play', async () => {
    const t0 = performance.now();
    // podman raises the open-files and process limits to 1048576 unless told otherwise, which a machine with lower
    // hard limits (a container, a CI runner) refuses; a pod asks for far fewer.
    const conf = join(tmp, 'containers.conf');
    await writeFile(conf, '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n');
    const play = await execa('podman', ['kube', 'play', '--network', 'host', podYaml], {
      reject: false,
      all: true,
      env: { CONTAINERS_CONF: conf },
    });
    expect(play.exitCode, play.all).toBe(0);
    const ctr = `${POD}-img2vm`;
    const waited = await execa('podman', ['wait', ctr], { reject: false, all: true });
    const logs = await execa('podman', ['logs', ctr], { reject: false, all: true });
    console.log(`podman kube play job: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    expect(waited.stdout.trim(), logs.all).toBe('0');
    const raw = await execa('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${host}/ci/disk:1`]);
    expect(JSON.parse(raw.stdout)).toMatchObject({ artifactType: 'application/vnd.img2vm.disk.v1' });
    const tags = await execa('skopeo', ['list-tags', '--tls-verify=false', `docker://${host}/ci/img2vm-cache`]);
    expect((JSON.parse(tags.stdout) as { Tags: string[] }).Tags).toEqual([expect.stringMatching(/^[0-9a-f]{64}$/)]);
  });
});
