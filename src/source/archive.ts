// Reads `docker save` archives (legacy and OCI-layout flavours) from a stream into a work directory, safely.
import { createReadStream } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { ImageConfigSchema, type SourceImage } from './image.js';

const ManifestSchema = z
  .array(
    z.object({
      Config: z.string(),
      RepoTags: z.array(z.string()).nullish(),
      Layers: z.array(z.string()),
    }),
  )
  .min(1);

/** Normalises a member name of an archive; anything that could climb out of the work dir is refused. */
export function archiveMemberPath(name: string): string {
  const n = posix.normalize(name.replace(/^\.\/+/, ''));
  if (n.startsWith('/') || n === '..' || n.startsWith('../') || n.includes('\0')) {
    throw new Img2vmError('badImage', `image archive has an unsafe member name "${name}"`, 'the archive is corrupt or hostile; re-create it with docker save');
  }
  return n.replace(/\/$/, '');
}

export interface ExtractedArchive {
  dir: string;
  /** Symlinked members (legacy docker save links duplicate layers), member → target member. */
  links: Map<string, string>;
}

/** Unpacks the regular files of an image archive below dir; symlinks are remembered, never created. */
export async function extractArchive(stream: Readable, dir: string): Promise<ExtractedArchive> {
  const links = new Map<string, string>();
  const ex = tar.extract();
  const done = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      const p = archiveMemberPath(h.name);
      if (h.type === 'file' || h.type === 'contiguous-file') {
        const dest = join(dir, p);
        await mkdir(dirname(dest), { recursive: true });
        await pipeline(entry, createWriteStream(dest, { mode: 0o600 }));
        continue;
      }
      if (h.type === 'symlink' && h.linkname) {
        links.set(p, archiveMemberPath(posix.join(posix.dirname(p), h.linkname)));
      }
      entry.resume();
    }
  })();
  try {
    await Promise.all([pipeline(stream, ex), done]);
  } catch (e) {
    if (e instanceof Img2vmError) throw e;
    if ((e as Error).name === 'AbortError') throw e;
    throw new Img2vmError('badImage', `image archive is corrupt: ${(e as Error).message}`, 'check the file, or re-create it with docker save', { cause: e });
  }
  return { dir, links };
}

function resolveMember(a: ExtractedArchive, member: string): string {
  let p = archiveMemberPath(member);
  for (let i = 0; i < 8 && a.links.has(p); i++) p = a.links.get(p)!;
  return join(a.dir, p);
}

async function readJson(path: string, what: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new Img2vmError('badImage', `image archive has no valid ${what}: ${(e as Error).message}`, 'the archive is corrupt or not made by docker save');
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return `sha256:${h.digest('hex')}`;
}

/** Opens an extracted docker-save archive as an image (the first manifest entry, or the one tagged `tag`). */
export async function openArchiveImage(a: ExtractedArchive, ref: string, tag?: string): Promise<SourceImage> {
  const parsed = ManifestSchema.safeParse(await readJson(join(a.dir, 'manifest.json'), 'manifest.json'));
  if (!parsed.success) {
    throw new Img2vmError('badImage', `image archive manifest.json is invalid: ${z.prettifyError(parsed.error)}`, 'the archive is corrupt or not made by docker save');
  }
  const entry = tag ? parsed.data.find((m) => m.RepoTags?.includes(tag)) : parsed.data[0];
  if (!entry) {
    const tags = parsed.data.flatMap((m) => m.RepoTags ?? []);
    throw new Img2vmError('imageNotFound', `image archive has no image tagged "${tag}"`, `it holds: ${tags.join(', ') || '(untagged images)'}`);
  }
  const configPath = resolveMember(a, entry.Config);
  const cfg = ImageConfigSchema.safeParse(await readJson(configPath, 'image config'));
  if (!cfg.success) {
    throw new Img2vmError('badImage', `image config is invalid: ${z.prettifyError(cfg.error)}`, 'the archive is corrupt');
  }
  const id = await sha256File(configPath);
  const layers = await Promise.all(
    entry.Layers.map(async (l) => {
      const path = resolveMember(a, l);
      await stat(path).catch(() => {
        throw new Img2vmError('badImage', `image archive lacks layer ${l}`, 'the archive is truncated; re-create it');
      });
      return { name: l, open: async () => createReadStream(path) as Readable };
    }),
  );
  return { ref, id, config: cfg.data, layers };
}
