// Reads `docker save` archives (legacy and OCI-layout flavours) from a stream into a work directory, safely.
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { asWriteError, isNoSpace, isReadOnly } from '../core/no-space.js';
import { testHook } from '../core/test-hook.js';
import { detectCompression } from '../rootfs/decompress.js';
import { MAX_JSON, isDigest, sha256, verified } from './digest.js';
import { ImageConfigSchema, type Layer, type SourceImage } from './image.js';
import { formatZodError } from './manifest.js';

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
    throw new Img2vmError(
      'badImage',
      `image archive has an unsafe member name "${name}"`,
      'the archive is corrupt or hostile; re-create it with docker save',
    );
  }
  return n.replace(/\/$/, '');
}

export interface ExtractedArchive {
  dir: string;
  /** Symlinked members (legacy docker save links duplicate layers), member → target member. */
  links: Map<string, string>;
}

export interface ExtractOptions {
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
  /** The archive's size, when known: what a full work directory is told it needs. */
  size?: number;
}

/** Unpacks the regular files of an image archive below dir; symlinks are remembered, never created. */
export async function extractArchive(
  stream: Readable,
  dir: string,
  o: ExtractOptions | ((n: number) => void) = {},
): Promise<ExtractedArchive> {
  const { onBytes, signal, size } = typeof o === 'function' ? { onBytes: o, signal: undefined, size: undefined } : o;
  const links = new Map<string, string>();
  const ex = tar.extract();
  if (onBytes) stream.on('data', (c: Buffer) => onBytes(c.length));
  let files = 0;
  const done = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      const p = archiveMemberPath(h.name);
      if (h.type === 'file' || h.type === 'contiguous-file') {
        const dest = join(dir, p);
        await mkdir(dirname(dest), { recursive: true });
        await pipeline(entry, createWriteStream(dest, { mode: 0o600 }), { signal });
        if (files++ === 0) await testHook('during', 'source/extract');
        signal?.throwIfAborted();
        continue;
      }
      if (h.type === 'symlink' && h.linkname) {
        links.set(p, archiveMemberPath(posix.join(posix.dirname(p), h.linkname)));
      }
      entry.resume();
    }
  })();
  try {
    await Promise.all([pipeline(stream, ex, { signal }), done]);
  } catch (e) {
    // Both sides are torn down (a stream left paused would keep its file open).
    stream.destroy();
    ex.destroy();
    await done.catch(() => undefined);
    if (signal?.aborted) throw signal.reason;
    if (e instanceof Img2vmError) throw e;
    if ((e as Error).name === 'AbortError') throw e;
    // A full work directory is not a corrupt archive.
    if (isNoSpace(e) || isReadOnly(e))
      throw asWriteError(e, {
        area: 'work',
        what: "the image archive's files",
        path: dir,
        ...(size !== undefined ? { needBytes: size, needNote: "the archive's size" } : {}),
      });
    throw new Img2vmError(
      'badImage',
      `image archive is corrupt: ${(e as Error).message}`,
      'check the file, or re-create it with docker save',
      { cause: e },
    );
  }
  return { dir, links };
}

/** The file of a member, following the archive's own symlinks (which were checked when it was read). */
export function resolveMember(a: ExtractedArchive, member: string): string {
  let p = archiveMemberPath(member);
  for (let i = 0; i < 8 && a.links.has(p); i++) p = a.links.get(p)!;
  return join(a.dir, p);
}

async function readJsonBytes(path: string, what: string): Promise<Buffer> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile())
    throw new Img2vmError(
      'badImage',
      `image archive has no ${what}`,
      'the archive is corrupt or not made by docker save',
    );
  if (st.size > MAX_JSON)
    throw new Img2vmError(
      'badImage',
      `image archive's ${what} is ${st.size} bytes; more than ${MAX_JSON} is refused`,
      'the archive is hostile or broken',
    );
  return readFile(path);
}

async function readJson(path: string, what: string): Promise<unknown> {
  const bytes = await readJsonBytes(path, what);
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

/** Opens an extracted docker-save archive as an image (the first manifest entry, or the one tagged `tag`). */
export async function openArchiveImage(a: ExtractedArchive, ref: string, tag?: string): Promise<SourceImage> {
  const parsed = ManifestSchema.safeParse(await readJson(join(a.dir, 'manifest.json'), 'manifest.json'));
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
  const configPath = resolveMember(a, entry.Config);
  const configBytes = await readJsonBytes(configPath, 'image config');
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
      const path = resolveMember(a, l);
      const st = await stat(path).catch(() => undefined);
      if (!st?.isFile())
        throw new Img2vmError('badImage', `image archive lacks layer ${l}`, 'the archive is truncated; re-create it');
      const digest = await expectedDigest(archiveMemberPath(l), path, diffIds[i]);
      const what = `image archive layer ${l}`;
      return {
        name: l,
        size: st.size,
        ...(digest ? { digest } : {}),
        open: async () =>
          digest ? verified(createReadStream(path), digest, st.size, what) : (createReadStream(path) as Readable),
      };
    }),
  );
  return { ref, id, config: cfg.data, configBytes, layers, transport: 'docker-archive' };
}

/**
 * What a layer member must hash to: its name in the OCI flavour (blobs/sha256/HEX); in the legacy
 * flavour an uncompressed layer.tar is exactly the layer's diff, so its diff_id.
 */
async function expectedDigest(member: string, path: string, diffId: string | undefined): Promise<string | undefined> {
  const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(member);
  if (m) return `sha256:${m[1]}`;
  if (!diffId || !isDigest(diffId)) return undefined;
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(6);
    const { bytesRead } = await fh.read(head, 0, 6, 0);
    return detectCompression(head.subarray(0, bytesRead)) === 'none' ? diffId : undefined;
  } finally {
    await fh.close();
  }
}
