// Reads OCI image layouts (oci:DIR[:TAG]) and, once unpacked, oci-archive: files, verifying every blob against its digest.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { openRegularFile } from './blob-cache.js';
import { MAX_JSON, VerifyStream, hexOf, tooLarge, truncated, verified, verifyBytes } from './digest.js';
import { ImageConfigSchema, type Layer, type SourceImage, type SourceTransport } from './image.js';
import { IndexSchema, isIndexType, parseJson, validate, type Descriptor, type ImageIndex } from './manifest.js';
import { formatPlatform, platformMatches, selectPlatform, type Platform } from './platform.js';
import { mapLimit, resolveManifest } from './pull.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

const LayoutFileSchema = z.object({ imageLayoutVersion: z.string() }).passthrough();

export interface OciLayoutOptions {
  tag?: string;
  platform: Platform;
  platformExplicit: boolean;
  /** Maps a path inside the layout to a file (an unpacked archive resolves its symlinked members). */
  resolve?: (member: string) => string;
  transport?: SourceTransport;
  signal?: AbortSignal;
  /** How messages name the layout (an unpacked archive is named after its file). */
  label?: string;
}

/** Opens one image of an OCI layout directory; blobs are read in place and verified. */
export async function openOciLayout(dir: string, ref: string, o: OciLayoutOptions): Promise<SourceImage> {
  const resolve = o.resolve ?? ((m: string) => join(dir, m));
  const where = o.label ?? `OCI layout ${dir}`;
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new Img2vmError(
      'imageNotFound',
      `${where} does not exist or is not a directory`,
      'give the directory that holds index.json and blobs/ (oci:DIR[:TAG])',
    );
  }
  const layoutFile = await readSmallFile(resolve('oci-layout'), 'oci-layout', where, true);
  if (layoutFile) validate(LayoutFileSchema, parseJson(layoutFile, `${where}: oci-layout`), `${where}: oci-layout`);
  const indexBytes = await readSmallFile(resolve('index.json'), 'index.json', where, false);
  if (!indexBytes)
    throw new Img2vmError(
      'imageNotFound',
      `${where} has no index.json: not an OCI image layout`,
      'create one with skopeo copy or docker save (Docker ≥ 25), or check the path',
    );
  const index = validate(IndexSchema, parseJson(indexBytes, `${where}: index.json`), `${where}: index.json`);

  const readBlob = async (d: Descriptor): Promise<Buffer> => {
    if (d.size > MAX_JSON)
      throw new Img2vmError(
        'badImage',
        `${where}: ${d.mediaType} ${d.digest} declares ${d.size} bytes; more than ${MAX_JSON} is refused`,
        'the layout is hostile or broken',
      );
    return readBlobFile(resolve(`blobs/sha256/${hexOf(d.digest)}`), d, where);
  };

  const entry = chooseEntry(index, o, where);
  const top = { bytes: await readBlob(entry), contentType: entry.mediaType };
  const { manifest, digest: manifestDigest } = await resolveManifest(top, entry.digest, where, o, async (d) => ({
    bytes: await readBlob(d),
    contentType: d.mediaType,
  }));

  const configBytes = await readBlob(manifest.config);
  const what = `${where}: image config ${manifest.config.digest}`;
  const config = validate(ImageConfigSchema, parseJson(configBytes, what), what);
  if (
    o.platformExplicit &&
    !platformMatches(
      { os: config.os, architecture: config.architecture, variant: (config as { variant?: string }).variant },
      o.platform,
    )
  ) {
    throw new Img2vmError(
      'imageNotFound',
      `${where}: the image is ${config.os}/${config.architecture}, not ${formatPlatform(o.platform)}`,
      'choose its platform with --platform',
    );
  }

  // Every layer is hashed before the image is handed out, so a bad blob fails here rather than half-way through a build.
  await mapLimit(manifest.layers, 3, o.signal, async (l) => {
    const path = resolve(`blobs/sha256/${hexOf(l.digest)}`);
    await pipeline(
      await openBlobFile(path, l, where),
      new VerifyStream(l.digest, l.size, `${where}: layer ${l.digest}`),
      devNull(),
      { signal: o.signal },
    );
  });
  const layers: Layer[] = manifest.layers.map((l) => {
    const path = resolve(`blobs/sha256/${hexOf(l.digest)}`);
    return {
      name: l.digest,
      digest: l.digest,
      size: l.size,
      mediaType: l.mediaType,
      open: async () => verified(await openBlobFile(path, l, where), l.digest, l.size, `${where}: layer ${l.digest}`),
    };
  });
  return {
    ref,
    id: manifest.config.digest,
    config,
    configBytes,
    layers,
    manifestDigest,
    transport: o.transport ?? 'oci',
  };
}

function tagsOf(index: ImageIndex): string[] {
  return index.manifests.map((m) => m.annotations?.[REF_NAME]).filter((t): t is string => !!t);
}

/** The entry a TAG names, or the only one; several platform entries without tags are chosen from by platform. */
function chooseEntry(index: ImageIndex, o: OciLayoutOptions, where: string): Descriptor {
  const tags = tagsOf(index);
  if (o.tag !== undefined) {
    const hits = index.manifests.filter(
      (m) => m.annotations?.[REF_NAME] === o.tag || m.annotations?.[CONTAINERD_NAME] === o.tag,
    );
    if (hits.length === 1) return hits[0]!;
    if (hits.length > 1) return selectPlatform(hits, o.platform, `${where}:${o.tag}`);
    throw new Img2vmError(
      'imageNotFound',
      `${where} has no image tagged "${o.tag}"`,
      tags.length ? `it has: ${tags.join(', ')}` : 'it has no tagged images; leave the tag out',
    );
  }
  if (index.manifests.length === 1) return index.manifests[0]!;
  if (index.manifests.length === 0)
    throw new Img2vmError('badImage', `${where}: index.json lists no images`, 'the layout is empty');
  if (tags.length === 0 && index.manifests.every((m) => m.platform && !isIndexType(m.mediaType))) {
    return selectPlatform(index.manifests, o.platform, where);
  }
  throw new Img2vmError(
    'usage',
    `${where} holds ${index.manifests.length} images; say which one`,
    tags.length ? `add a tag: oci:DIR:TAG, one of: ${tags.join(', ')}` : 'the images are untagged',
  );
}

/**
 * Opens a blob file so that nothing at its name can block or feed the read (a FIFO, a device, a symlink out of the
 * layout), checking its size against the descriptor.
 */
async function openBlobFile(path: string, d: Descriptor, where: string): Promise<Readable> {
  let f;
  try {
    f = await openRegularFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP')
      throw new Img2vmError(
        'badImage',
        `${where}: blob ${d.digest} is a symbolic link`,
        'layouts hold blobs as regular files; the layout is hostile or broken',
      );
    if (code === 'ENOTREG')
      throw new Img2vmError(
        'badImage',
        `${where}: blob ${d.digest} is not a regular file`,
        'the layout is hostile or broken',
      );
    throw e;
  }
  if (!f)
    throw new Img2vmError('badImage', `${where} lacks blob ${d.digest}`, 'the layout is incomplete; copy it again');
  const { fh, size } = f;
  if (size > d.size) {
    await fh.close();
    throw tooLarge(`${where}: blob ${d.digest}`, d.size);
  }
  if (size < d.size) {
    await fh.close();
    throw truncated(`${where}: blob ${d.digest}`, size, d.size);
  }
  return fh.createReadStream() as Readable;
}

async function readBlobFile(path: string, d: Descriptor, where: string): Promise<Buffer> {
  const s = await openBlobFile(path, d, where);
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  const buf = Buffer.concat(parts);
  verifyBytes(buf, d.digest, `${where}: ${kindOf(d.mediaType)} ${d.digest}`, d.size);
  return buf;
}

function kindOf(mediaType: string): string {
  if (/config/.test(mediaType)) return 'image config';
  if (isIndexType(mediaType)) return 'index';
  if (/manifest/.test(mediaType)) return 'manifest';
  return mediaType;
}

/** index.json and oci-layout: followed if they are links (the user's own layout), but only ever read as regular files. */
async function readSmallFile(
  path: string,
  name: string,
  where: string,
  optional: boolean,
): Promise<Buffer | undefined> {
  let f;
  try {
    f = await openRegularFile(path, true);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTREG') throw e;
    if (optional) return undefined;
    throw new Img2vmError('badImage', `${where}: ${name} is not a regular file`, 'the layout is broken');
  }
  if (!f) return undefined;
  try {
    if (f.size > MAX_JSON)
      throw new Img2vmError(
        'badImage',
        `${where}: ${name} is ${f.size} bytes; more than ${MAX_JSON} is refused`,
        'the layout is hostile or broken',
      );
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of f.fh.createReadStream({ autoClose: false })) {
      n += (c as Buffer).length;
      if (n > MAX_JSON)
        throw new Img2vmError(
          'badImage',
          `${where}: ${name} is larger than ${MAX_JSON} bytes`,
          'the layout is hostile or broken',
        );
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts);
  } finally {
    await f.fh.close();
  }
}

function devNull(): Writable {
  return new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });
}
