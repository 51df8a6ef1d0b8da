// Reads `docker save` archives (legacy and OCI-layout flavours) in place: members are found by their offsets in the
// tar and read where they lie, never unpacked.
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { progress } from '../core/events.js';
import { detectCompression } from '../rootfs/decompress.js';
import {
  archiveMemberPath,
  findMember,
  indexArchive,
  openMember,
  type ArchiveFile,
  type ArchiveIndex,
} from './archive-index.js';
import { MAX_JSON, isDigest, sha256, verified } from './digest.js';
import { ImageConfigSchema, type Layer, type SourceImage } from './image.js';
import { formatZodError } from './manifest.js';

export { archiveMemberPath, type ArchiveIndex } from './archive-index.js';

/** Indexes the archive at file (size bytes), with progress as its headers are passed; nothing is written anywhere. */
export async function indexImageArchive(file: string, size: number, ctx: RunContext): Promise<ArchiveIndex> {
  const bar = progress(ctx.sink, 'source', 'bytes', size, 'archive');
  try {
    const a = await indexArchive(file, { signal: ctx.signal, onBytes: (n) => bar.add(n) });
    bar.end();
    return a;
  } catch (e) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (e instanceof Img2vmError || (e as Error).name === 'AbortError') throw e;
    throw new Img2vmError('badImage', `cannot read image archive ${file}: ${(e as Error).message}`, 'check the file', {
      cause: e,
    });
  }
}

const ManifestSchema = z
  .array(
    z.object({
      Config: z.string(),
      RepoTags: z.array(z.string()).nullish(),
      Layers: z.array(z.string()),
    }),
  )
  .min(1);

/** A small member's bytes; absent, not a regular file, or too large is an error naming what was looked for. */
async function readJsonBytes(a: ArchiveIndex, member: string, what: string): Promise<Buffer> {
  const m = findMember(a, member);
  if (m?.kind !== 'file')
    throw new Img2vmError(
      'badImage',
      `image archive has no ${what}`,
      'the archive is corrupt or not made by docker save',
    );
  if (m.size > MAX_JSON)
    throw new Img2vmError(
      'badImage',
      `image archive's ${what} is ${m.size} bytes; more than ${MAX_JSON} is refused`,
      'the archive is hostile or broken',
    );
  const parts: Buffer[] = [];
  for await (const c of await openMember(a, m)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function readJson(a: ArchiveIndex, member: string, what: string): Promise<unknown> {
  const bytes = await readJsonBytes(a, member, what);
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new Img2vmError(
      'badImage',
      `image archive has no valid ${what}: ${(e as Error).message}`,
      'the archive is corrupt or not made by docker save',
    );
  }
}

/** Opens a docker-save archive as an image (the first manifest entry, or the one tagged `tag`). */
export async function openArchiveImage(a: ArchiveIndex, ref: string, tag?: string): Promise<SourceImage> {
  const parsed = ManifestSchema.safeParse(await readJson(a, 'manifest.json', 'manifest.json'));
  if (!parsed.success) {
    throw new Img2vmError(
      'badImage',
      `image archive manifest.json is invalid: ${formatZodError(parsed.error)}`,
      'the archive is corrupt or not made by docker save',
    );
  }
  const entry = tag ? parsed.data.find((m) => m.RepoTags?.includes(tag)) : parsed.data[0];
  if (!entry) {
    const tags = parsed.data.flatMap((m) => m.RepoTags ?? []);
    throw new Img2vmError(
      'imageNotFound',
      `image archive has no image tagged "${tag}"`,
      `it holds: ${tags.join(', ') || '(untagged images)'}`,
    );
  }
  const configBytes = await readJsonBytes(a, entry.Config, 'image config');
  let cfgJson: unknown;
  try {
    cfgJson = JSON.parse(configBytes.toString('utf8'));
  } catch (e) {
    throw new Img2vmError(
      'badImage',
      `image archive has no valid image config: ${(e as Error).message}`,
      'the archive is corrupt or not made by docker save',
    );
  }
  const cfg = ImageConfigSchema.safeParse(cfgJson);
  if (!cfg.success) {
    throw new Img2vmError(
      'badImage',
      `image config is invalid: ${formatZodError(cfg.error)}`,
      'the archive is corrupt',
    );
  }
  const id = sha256(configBytes);
  const diffIds = cfg.data.rootfs?.diff_ids ?? [];
  const layers = await Promise.all(
    entry.Layers.map(async (l, i): Promise<Layer> => {
      const m = findMember(a, l);
      if (m?.kind !== 'file')
        throw new Img2vmError('badImage', `image archive lacks layer ${l}`, 'the archive is truncated; re-create it');
      const digest = await expectedDigest(a, archiveMemberPath(l), m, diffIds[i]);
      const what = `image archive layer ${l}`;
      return {
        name: l,
        size: m.size,
        ...(digest ? { digest } : {}),
        open: async (): Promise<Readable> => {
          const s = await openMember(a, m);
          return digest ? verified(s, digest, m.size, what) : s;
        },
      };
    }),
  );
  return { ref, id, config: cfg.data, configBytes, layers, transport: 'docker-archive' };
}

/**
 * What a layer member must hash to: its name in the OCI flavour (blobs/sha256/HEX); in the legacy
 * flavour an uncompressed layer.tar is exactly the layer's diff, so its diff_id.
 */
async function expectedDigest(
  a: ArchiveIndex,
  member: string,
  file: ArchiveFile,
  diffId: string | undefined,
): Promise<string | undefined> {
  const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(member);
  if (m) return `sha256:${m[1]}`;
  if (!diffId || !isDigest(diffId)) return undefined;
  const head = await readHead(a, file, 6);
  return detectCompression(head) === 'none' ? diffId : undefined;
}

/** The first n bytes of a member (fewer when it is shorter). */
async function readHead(a: ArchiveIndex, file: ArchiveFile, n: number): Promise<Buffer> {
  const s = await openMember(a, { ...file, size: Math.min(n, file.size) });
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
