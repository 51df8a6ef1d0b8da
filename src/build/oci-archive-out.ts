// Writes any SourceImage as an oci-archive file (an OCI image layout in a tar), so a daemonless tool (podman load) can take it.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as TarStream from 'tar-stream';
import { sha256 } from '../source/digest.js';
import type { Layer, SourceImage } from '../source/image.js';
import { tarStream } from '../core/lazy.js';

const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';

/** The OCI layer type for a source's media type, or for the blob's first bytes when the source names none. */
export function layerMediaType(mediaType: string | undefined, head?: Buffer): string {
  const t = mediaType ?? '';
  if (/zstd/.test(t)) return `${OCI_LAYER}+zstd`;
  if (/gzip/.test(t)) return `${OCI_LAYER}+gzip`;
  if (t) return OCI_LAYER;
  if (head && head[0] === 0x1f && head[1] === 0x8b) return `${OCI_LAYER}+gzip`;
  if (head && head.readUInt32LE(0) === 0xfd2fb528) return `${OCI_LAYER}+zstd`;
  return OCI_LAYER;
}

interface Blob {
  digest: string;
  size: number;
  mediaType: string;
  open: () => Promise<Readable>;
}

/** Copies a layer of unknown digest into the work directory, learning its digest, size and compression on the way. */
async function spool(layer: Layer, path: string, signal: AbortSignal): Promise<Blob> {
  const h = createHash('sha256');
  let head: Buffer | undefined;
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      if (!head) head = Buffer.from(chunk.subarray(0, 4));
      h.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  await pipeline(await layer.open(), tap, createWriteStream(path, { mode: 0o600 }), { signal });
  return {
    digest: `sha256:${h.digest('hex')}`,
    size,
    mediaType: layerMediaType(layer.mediaType, head && head.length >= 4 ? head : undefined),
    open: async () => createReadStream(path),
  };
}

function add(pack: TarStream.Pack, name: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    pack.entry({ name, mode: 0o644, mtime: new Date(0) }, data, (e) => (e ? reject(e) : resolve())),
  );
}

/**
 * Writes img to dest as an oci-archive tagged `name` (org.opencontainers.image.ref.name). The config goes in
 * byte for byte, so the loaded image keeps the id sha256(configBytes); returns that id.
 */
export async function writeOciArchive(
  img: SourceImage,
  dest: string,
  name: string,
  spoolDir: string,
  signal: AbortSignal,
): Promise<string> {
  const configBytes = img.configBytes ?? Buffer.from(JSON.stringify(img.config));
  const spooled: string[] = [];
  try {
    const blobs: Blob[] = [];
    for (const [i, l] of img.layers.entries()) {
      if (l.digest && l.size !== undefined) {
        blobs.push({ digest: l.digest, size: l.size, mediaType: layerMediaType(l.mediaType), open: () => l.open() });
      } else {
        const p = join(spoolDir, `layer-${i}`);
        spooled.push(p);
        blobs.push(await spool(l, p, signal));
      }
    }
    const configDigest = sha256(configBytes);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: configDigest,
          size: configBytes.length,
        },
        layers: blobs.map((b) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })),
      }),
    );
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: sha256(manifest),
            size: manifest.length,
            annotations: { 'org.opencontainers.image.ref.name': name },
          },
        ],
      }),
    );
    const pack = tarStream().pack();
    const writing = pipeline(pack, createWriteStream(dest, { mode: 0o600 }), { signal });
    const feeding = (async () => {
      await add(pack, 'oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
      await add(pack, 'index.json', index);
      await add(pack, `blobs/sha256/${configDigest.slice(7)}`, configBytes);
      await add(pack, `blobs/sha256/${sha256(manifest).slice(7)}`, manifest);
      const seen = new Set<string>();
      for (const b of blobs) {
        if (seen.has(b.digest)) continue;
        seen.add(b.digest);
        const entry = pack.entry({
          name: `blobs/sha256/${b.digest.slice(7)}`,
          size: b.size,
          mode: 0o644,
          mtime: new Date(0),
        });
        await pipeline(await b.open(), entry, { signal });
      }
      pack.finalize();
    })();
    feeding.catch((e) => pack.destroy(e));
    await Promise.all([feeding, writing]);
    if ((await stat(dest)).size === 0) throw new Error(`writing ${dest} produced nothing`);
    return configDigest;
  } finally {
    for (const p of spooled) await rm(p, { force: true });
  }
}
