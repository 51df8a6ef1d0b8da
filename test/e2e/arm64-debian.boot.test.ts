// A Debian bookworm arm64 root file system (debootstrap --arch arm64 --foreign, its second stage under
// qemu-user-static; built once and cached by fixtures/debian-arm64-rootfs.sh, which needs root) as an OCI image
// with no daemon: --init img2vm gives an arm64 disk that boots to a console login on qemu-system-aarch64.
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { img2vm, REPO } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', IMG2VM_ACCEL: 'tcg' };
let tmp: string;
let layout: string;
const timings: string[] = [];

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** An OCI layout of one arm64 image whose only layer is the tar (linked, not copied), CMD /bin/bash. */
async function layoutOf(tar: string, dir: string): Promise<void> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (bytes: string) => {
    const d = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(blobs, d), bytes);
    return { digest: `sha256:${d}`, size: Buffer.byteLength(bytes) };
  };
  const layer = { digest: `sha256:${await sha256File(tar)}`, size: (await stat(tar)).size };
  await link(tar, join(blobs, layer.digest.slice(7)));
  const config = await put(
    JSON.stringify({
      architecture: 'arm64',
      os: 'linux',
      config: { Cmd: ['/bin/bash'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
    }),
  );
  const manifest = await put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    }),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          platform: { os: 'linux', architecture: 'arm64' },
        },
      ],
    }),
  );
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-arm64-debian-'));
  const t0 = performance.now();
  const r = await execa('bash', [join(REPO, 'fixtures', 'debian-arm64-rootfs.sh'), 'bookworm'], { all: true });
  timings.push(`fixture (cached after the first run): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tar = r.stdout.trim().split('\n').pop()!;
  // Beside the cached tar, so the layer is a hard link to it rather than a copy of a few hundred MB.
  layout = await mkdtemp(join(dirname(tar), 'layout-'));
  await layoutOf(tar, layout);
}, 60 * 60_000);

afterAll(async () => {
  if (timings.length) console.log(`arm64 Debian:\n${timings.join('\n')}`);
  await rm(tmp, { recursive: true, force: true });
  if (layout) await rm(layout, { recursive: true, force: true });
});

describe('Debian bookworm arm64, --init img2vm', () => {
  it('boots to a console login on aarch64; root logs in and runs a command', async () => {
    const out = join(tmp, 'debian-arm64.qcow2');
    const t0 = performance.now();
    const c = await img2vm([`oci:${layout}`, '--init', 'img2vm', '--password', 'pw', '-o', out, '--json'], {
      env: NO_DAEMON,
    });
    expect(c.exitCode, c.all).toBe(0);
    timings.push(`convert: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const plan = JSON.parse(c.stdout).plan as { architecture: { arch: string }; guest: { init: { mode: string } } };
    expect(plan.architecture.arch).toBe('arm64');
    expect(plan.guest.init).toMatchObject({ mode: 'console', login: true });
    const t1 = performance.now();
    const t = await img2vm(
      ['test', out, '--login', 'root:pw', '--run', 'uname -m; cat /etc/debian_version', '--timeout', '1200', '--json'],
      { env: NO_DAEMON },
    );
    expect(t.exitCode, t.all).toBe(0);
    expect(JSON.parse(t.stdout).command.output).toMatch(/^aarch64\n12\./);
    timings.push(`boot, login, command (TCG): ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  });
});
