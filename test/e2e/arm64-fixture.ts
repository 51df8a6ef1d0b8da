// The cached Debian bookworm arm64 root file system (fixtures/debian-arm64-rootfs.sh, which needs root and
// qemu-aarch64 registered with binfmt_misc) as an OCI layout of one linux/arm64 image, for the arm64 boot tests.
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { REPO } from './helpers.js';

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

/** Builds (or takes the cached) root file system and lays it out; the layout is the caller's to remove. */
export async function arm64DebianLayout(timings: string[]): Promise<string> {
  const t0 = performance.now();
  const r = await execa('bash', [join(REPO, 'fixtures', 'debian-arm64-rootfs.sh'), 'bookworm'], { all: true });
  timings.push(`fixture (cached after the first run): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tar = r.stdout.trim().split('\n').pop()!;
  // Beside the cached tar, so the layer is a hard link to it rather than a copy of a few hundred MB.
  const layout = await mkdtemp(join(dirname(tar), 'layout-'));
  try {
    await layoutOf(tar, layout);
  } catch (e) {
    await rm(layout, { recursive: true, force: true });
    throw e;
  }
  return layout;
}
