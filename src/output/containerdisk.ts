// KubeVirt containerDisk: an OCI image archive whose one layer holds the qcow2 at /disk/disk.qcow2, owned by 107:107 (qemu).
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import type { RunContext } from '../core/context.js';
import { fixedEpochSeconds } from '../core/epoch.js';
import { pushOciImage, type PushBlob, type PushManifest, type PushOptions } from '../source/push.js';
import type { OutputFormat } from './format.js';

const QEMU_UID = 107;
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG_TYPE = 'application/vnd.oci.image.config.v1+json';
const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar';

/** Archive members and the image's created time: SOURCE_DATE_EPOCH, else 1970 (so the archive is reproducible). */
function mtime(): Date {
  return new Date(fixedEpochSeconds() * 1000);
}

/** Streams a tar into `dest` while hashing it; returns its sha256 digest and size. */
async function writeHashed(pack: tar.Pack, dest: string, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  const tee = new PassThrough();
  tee.on('data', (c: Buffer) => {
    h.update(c);
    size += c.length;
  });
  await pipeline(pack, tee, createWriteStream(dest), { signal });
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** The layer: /disk (dir) and /disk/disk.qcow2, both 107:107, as KubeVirt's virt-launcher expects. */
async function diskLayer(qcow2: string, dest: string, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
  const pack = tar.pack();
  const size = (await stat(qcow2)).size;
  const done = writeHashed(pack, dest, signal);
  // The write side fails first when it fails (a full disk, an abort): the copy into the entry must not wait for it.
  done.catch((e: unknown) => pack.destroy(e as Error));
  const t = mtime();
  pack.entry({ name: 'disk/', type: 'directory', mode: 0o555, uid: QEMU_UID, gid: QEMU_UID, mtime: t });
  const entry = pack.entry({ name: 'disk/disk.qcow2', type: 'file', mode: 0o444, uid: QEMU_UID, gid: QEMU_UID, size, mtime: t });
  await pipeline(createReadStream(qcow2), entry, { signal });
  pack.finalize();
  return done;
}

function blob(json: unknown): { bytes: Buffer; digest: string } {
  const bytes = Buffer.from(JSON.stringify(json));
  return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
}

/** The image's parts, ready to write as a layout or to push: config and layer blobs, the manifest, and the layout's index. */
export interface ContainerDiskImage {
  /** Config (in memory) and the layer (a file under work), in push order. */
  blobs: PushBlob[];
  manifest: PushManifest & { digest: string };
  index: unknown;
}

/** Builds the layer (under `work`), the config and the manifest of the containerDisk image for a qcow2. */
export async function containerDiskImage(qcow2: string, work: string, signal?: AbortSignal): Promise<ContainerDiskImage> {
  const layerPath = join(work, 'containerdisk-layer.tar');
  const layer = await diskLayer(qcow2, layerPath, signal);
  const config = blob({
    architecture: 'amd64',
    os: 'linux',
    created: mtime().toISOString(),
    config: { Labels: { 'org.img2vm.kind': 'containerdisk' } },
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
    history: [{ created: mtime().toISOString(), created_by: 'img2vm --format containerdisk' }],
  });
  const manifest = blob({
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: { mediaType: CONFIG_TYPE, digest: config.digest, size: config.bytes.length },
    layers: [{ mediaType: LAYER_TYPE, digest: layer.digest, size: layer.size }],
  });
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: MANIFEST_TYPE, digest: manifest.digest, size: manifest.bytes.length, platform: { architecture: 'amd64', os: 'linux' } }],
  };
  return {
    blobs: [
      { digest: config.digest, size: config.bytes.length, mediaType: CONFIG_TYPE, bytes: config.bytes },
      { digest: layer.digest, size: layer.size, mediaType: LAYER_TYPE, path: layerPath },
    ],
    manifest: { bytes: manifest.bytes, mediaType: MANIFEST_TYPE, digest: manifest.digest },
    index,
  };
}

/** The OCI image layout as a tar: oci-layout, index.json, and the blobs (config, manifest, the layer). */
export async function writeContainerDiskArchive(qcow2: string, dest: string, work: string, signal?: AbortSignal): Promise<void> {
  const img = await containerDiskImage(qcow2, work, signal);
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(dest), { signal });
  out.catch((e: unknown) => pack.destroy(e as Error));
  const t = mtime();
  const file = (name: string, bytes: Buffer) => pack.entry({ name, mode: 0o644, mtime: t }, bytes);
  file('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  file('index.json', Buffer.from(JSON.stringify(img.index)));
  pack.entry({ name: 'blobs/', type: 'directory', mode: 0o755, mtime: t });
  pack.entry({ name: 'blobs/sha256/', type: 'directory', mode: 0o755, mtime: t });
  const [config, layer] = img.blobs as [PushBlob & { bytes: Buffer }, PushBlob & { path: string }];
  file(`blobs/sha256/${config.digest.slice(7)}`, config.bytes);
  file(`blobs/sha256/${img.manifest.digest.slice(7)}`, img.manifest.bytes);
  const entry = pack.entry({ name: `blobs/sha256/${layer.digest.slice(7)}`, mode: 0o644, size: layer.size, mtime: t });
  await pipeline(createReadStream(layer.path), entry, { signal });
  pack.finalize();
  await out;
}

/** Pushes the containerDisk image of a qcow2 to a registry as `ref` (a tag); returns the canonical reference and manifest digest. */
export async function pushContainerDisk(qcow2: string, ref: string, ctx: RunContext, opts: PushOptions = {}): Promise<{ ref: string; digest: string }> {
  const img = await containerDiskImage(qcow2, ctx.work, ctx.signal);
  return pushOciImage(ref, img.blobs, img.manifest, ctx, opts);
}

export const containerdisk: OutputFormat = {
  id: 'containerdisk',
  extensions: [],
  // The disk was written as the qcow2 itself (see output/target.ts); the archive wraps it.
  async write(i) {
    // With --push alone nothing is kept: the image is only pushed.
    if (i.plan.output.path !== null) await writeContainerDiskArchive(i.raw, i.dest, i.ctx.work, i.ctx.signal);
    return { containerDiskQcow2: i.raw };
  },
};
