// KubeVirt containerDisk: an OCI image archive whose one layer holds the qcow2 at /disk/disk.qcow2, owned by 107:107 (qemu).
import type { GuestArch } from '../core/arch.js';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as TarStream from 'tar-stream';
import type { RunContext } from '../core/context.js';
import { pushOciImage, type PushBlob, type PushManifest, type PushOptions } from '../source/push.js';
import type { OutputFormat } from './format.js';
import { tarStream } from '../core/lazy.js';

const QEMU_UID = 107;
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG_TYPE = 'application/vnd.oci.image.config.v1+json';
const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar';

/** Streams a tar into `dest` while hashing it; returns its sha256 digest and size. */
async function writeHashed(
  pack: TarStream.Pack,
  dest: string,
  signal?: AbortSignal,
): Promise<{ digest: string; size: number }> {
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
async function diskLayer(
  qcow2: string,
  dest: string,
  t: Date,
  signal?: AbortSignal,
): Promise<{ digest: string; size: number }> {
  const pack = tarStream().pack();
  const size = (await stat(qcow2)).size;
  const done = writeHashed(pack, dest, signal);
  // The write side fails first when it fails (a full disk, an abort): the copy into the entry must not wait for it.
  done.catch((e: unknown) => pack.destroy(e as Error));
  pack.entry({ name: 'disk/', type: 'directory', mode: 0o555, uid: QEMU_UID, gid: QEMU_UID, mtime: t });
  const entry = pack.entry({
    name: 'disk/disk.qcow2',
    type: 'file',
    mode: 0o444,
    uid: QEMU_UID,
    gid: QEMU_UID,
    size,
    mtime: t,
  });
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

/**
 * Builds the layer (under `work`), the config and the manifest of the containerDisk image for a qcow2; `epoch`
 * (seconds) is its members' and its config's time (SOURCE_DATE_EPOCH, else 1970: the archive is reproducible).
 */
export async function containerDiskImage(
  qcow2: string,
  work: string,
  epoch: number,
  signal?: AbortSignal,
  arch: GuestArch = 'amd64',
): Promise<ContainerDiskImage> {
  const t = new Date(epoch * 1000);
  const layerPath = join(work, 'containerdisk-layer.tar');
  const layer = await diskLayer(qcow2, layerPath, t, signal);
  // The disk's architecture, so KubeVirt and registries pick the containerDisk for the nodes that can run it.
  const config = blob({
    architecture: arch,
    os: 'linux',
    created: t.toISOString(),
    config: { Labels: { 'org.img2vm.kind': 'containerdisk' } },
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
    history: [{ created: t.toISOString(), created_by: 'img2vm --format containerdisk' }],
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
    manifests: [
      {
        mediaType: MANIFEST_TYPE,
        digest: manifest.digest,
        size: manifest.bytes.length,
        platform: { architecture: arch, os: 'linux' },
      },
    ],
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
export async function writeContainerDiskArchive(
  qcow2: string,
  dest: string,
  work: string,
  epoch: number,
  signal?: AbortSignal,
  arch: GuestArch = 'amd64',
): Promise<void> {
  const img = await containerDiskImage(qcow2, work, epoch, signal, arch);
  const pack = tarStream().pack();
  const out = pipeline(pack, createWriteStream(dest), { signal });
  out.catch((e: unknown) => pack.destroy(e as Error));
  const t = new Date(epoch * 1000);
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
export async function pushContainerDisk(
  qcow2: string,
  ref: string,
  ctx: RunContext,
  epoch: number,
  opts: PushOptions = {},
  arch: GuestArch = 'amd64',
): Promise<{ ref: string; digest: string }> {
  const img = await containerDiskImage(qcow2, ctx.work, epoch, ctx.signal, arch);
  return pushOciImage(ref, img.blobs, img.manifest, ctx, opts);
}

export const containerdisk: OutputFormat = {
  id: 'containerdisk',
  extensions: [],
  // The disk is assembled as a qcow2 in the work directory; the archive wraps it.
  assembly: { container: 'qcow2', inPlace: false },
  tools: [],
  async write(i) {
    // With --push alone nothing is kept: the image is only pushed.
    if (i.plan.output.path !== null)
      await writeContainerDiskArchive(
        i.disk,
        i.dest,
        i.env.work,
        i.env.fixedEpoch,
        i.env.signal,
        i.plan.architecture.arch,
      );
    return { sideFiles: [], containerDiskQcow2: i.disk };
  },
};
