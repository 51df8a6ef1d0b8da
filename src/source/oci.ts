// Reads OCI image layouts (oci:DIR[:TAG]) and oci-archive: files in place, verifying every blob against its digest.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { findMember, openMember, type ArchiveIndex } from './archive-index.js';
import { openRegularFile } from './blob-cache.js';
import { MAX_JSON, hexOf, tooLarge, truncated, verified, verifyBytes } from './digest.js';
import { ImageConfigSchema, type Layer, type SourceImage, type SourceTransport } from './image.js';
import { IndexSchema, isIndexType, parseJson, validate, type Descriptor, type ImageIndex } from './manifest.js';
import { formatPlatform, platformMatches, selectPlatform, type Platform } from './platform.js';
import { resolveManifest } from './pull.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

const LayoutFileSchema = z.object({ imageLayoutVersion: z.string() }).passthrough();

export interface OciLayoutOptions {
  tag?: string;
  platform: Platform;
  platformExplicit: boolean;
  transport?: SourceTransport;
  signal?: AbortSignal;
  /** How messages name the layout (an archive is named after its file). */
  label?: string;
}

/** A file of the layout, opened: its size, and its bytes (a stream that closes what it opened when read or destroyed). */
export interface LayoutFile {
  size: number;
  stream(): Promise<Readable>;
  /** Lets go of it unread. */
  close(): Promise<void>;
}

/**
 * How a layout's files are reached: a directory's, or an archive's members where they lie. undefined when absent;
 * something that is not a regular file is an error coded ENOTREG (ELOOP: a symbolic link, when follow is false).
 */
export type LayoutFiles = (path: string, follow: boolean) => Promise<LayoutFile | undefined>;

/** The files of a layout directory, each opened so that nothing at its name can block or feed the read. */
export function directoryFiles(dir: string): LayoutFiles {
  return async (path, follow) => {
    const f = await openRegularFile(join(dir, path), follow);
    if (!f) return undefined;
    return {
      size: f.size,
      stream: async () => f.fh.createReadStream() as Readable,
      close: () => f.fh.close(),
    };
  };
}

/** The members of an indexed archive as a layout's files, read in place. */
export function archiveFiles(a: ArchiveIndex): LayoutFiles {
  return async (path) => {
    const m = findMember(a, path);
    if (!m) return undefined;
    if (m.kind !== 'file') throw Object.assign(new Error(`${path} is not a regular file`), { code: 'ENOTREG' });
    return { size: m.size, stream: () => openMember(a, m), close: async () => {} };
  };
}

/** Opens one image of an OCI layout directory; blobs are read in place and verified. */
export async function openOciLayout(dir: string, ref: string, o: OciLayoutOptions): Promise<SourceImage> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new Img2vmError(
      'imageNotFound',
      `${o.label ?? `OCI layout ${dir}`} does not exist or is not a directory`,
      'give the directory that holds index.json and blobs/ (oci:DIR[:TAG])',
    );
  }
  return openLayoutImage(directoryFiles(dir), `OCI layout ${dir}`, ref, o);
}

/** Opens one image of an OCI layout whose files files() reaches, named `where` in messages. */
export async function openLayoutImage(
  files: LayoutFiles,
  label: string,
  ref: string,
  o: OciLayoutOptions,
): Promise<SourceImage> {
  const where = o.label ?? label;
  const layoutFile = await readSmallFile(files, 'oci-layout', where, true);
  if (layoutFile) validate(LayoutFileSchema, parseJson(layoutFile, `${where}: oci-layout`), `${where}: oci-layout`);
  const indexBytes = await readSmallFile(files, 'index.json', where, false);
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
    return readBlobFile(files, d, where);
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

  // Every layer is there, a regular file of its size, before the image is handed out (a missing or planted blob
  // fails here); its bytes are hashed once, as they are read.
  for (const l of manifest.layers) await (await openBlobFile(files, l, where)).close();
  const layers: Layer[] = manifest.layers.map((l) => ({
    name: l.digest,
    digest: l.digest,
    size: l.size,
    mediaType: l.mediaType,
    open: async () =>
      verified(await (await openBlobFile(files, l, where)).stream(), l.digest, l.size, `${where}: layer ${l.digest}`),
  }));
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
async function openBlobFile(files: LayoutFiles, d: Descriptor, where: string): Promise<LayoutFile> {
  let f;
  try {
    f = await files(`blobs/sha256/${hexOf(d.digest)}`, false);
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
  if (f.size > d.size) {
    await f.close();
    throw tooLarge(`${where}: blob ${d.digest}`, d.size);
  }
  if (f.size < d.size) {
    await f.close();
    throw truncated(`${where}: blob ${d.digest}`, f.size, d.size);
  }
  return f;
}

async function readBlobFile(files: LayoutFiles, d: Descriptor, where: string): Promise<Buffer> {
  const s = await (await openBlobFile(files, d, where)).stream();
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
  files: LayoutFiles,
  name: string,
  where: string,
  optional: boolean,
): Promise<Buffer | undefined> {
  let f;
  try {
    f = await files(name, true);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTREG') throw e;
    if (optional) return undefined;
    throw new Img2vmError('badImage', `${where}: ${name} is not a regular file`, 'the layout is broken');
  }
  if (!f) return undefined;
  if (f.size > MAX_JSON) {
    await f.close();
    throw new Img2vmError(
      'badImage',
      `${where}: ${name} is ${f.size} bytes; more than ${MAX_JSON} is refused`,
      'the layout is hostile or broken',
    );
  }
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of await f.stream()) {
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
}
