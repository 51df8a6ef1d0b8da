// Resolves an image reference with its transport (docker-daemon:, docker-archive:, bare) to a SourceImage.
import { createReadStream } from 'node:fs';
import { mkdtemp, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { extractArchive, openArchiveImage } from './archive.js';
import { DockerClient } from './docker-api.js';
import type { SourceImage } from './image.js';

export type Transport = 'docker-daemon' | 'docker-archive';

export interface ParsedSource {
  transport: Transport;
  /** Image name for the daemon, or a file path for archives. */
  target: string;
  tag?: string;
}

const KNOWN = ['docker-daemon', 'docker-archive', 'docker', 'oci', 'oci-archive'];

/** Splits TRANSPORT:REST; a bare reference (including host:port/name:tag) means the local daemon. */
export function parseSourceRef(ref: string): ParsedSource {
  if (!ref.trim()) throw new Img2vmError('usage', 'the image reference is empty', 'give an image, e.g. debian:bookworm');
  const m = /^([a-z-]+):(.*)$/.exec(ref);
  if (m && KNOWN.includes(m[1]!)) {
    const [, transport, rest] = m as unknown as [string, string, string];
    if (transport === 'docker-daemon') return { transport, target: rest };
    if (transport === 'docker-archive') {
      if (!rest) throw new Img2vmError('usage', 'docker-archive: needs a file', 'e.g. docker-archive:image.tar (made by docker save)');
      return { transport, target: rest };
    }
    throw new Img2vmError(
      'usage',
      `the ${transport}: transport is not supported yet`,
      'use an image in the local Docker daemon (NAME[:TAG] or docker-daemon:NAME) or a docker-archive:FILE from docker save',
    );
  }
  if (/\s/.test(ref)) throw new Img2vmError('usage', `"${ref}" is not a valid image reference`, 'references have no spaces, e.g. debian:bookworm');
  return { transport: 'docker-daemon', target: ref };
}

/** Opens the image; its files are unpacked below ctx.work, which the scope removes. */
export async function openSource(ref: string, ctx: RunContext, docker?: DockerClient): Promise<SourceImage> {
  const src = parseSourceRef(ref);
  const dir = await mkdtemp(join(ctx.work, 'source-'));
  if (src.transport === 'docker-archive') {
    await splitArchiveTag(src);
    const st = await stat(src.target).catch(() => undefined);
    if (!st?.isFile()) {
      throw new Img2vmError('imageNotFound', `docker archive "${src.target}" does not exist or is not a file`, 'create one with: docker save IMAGE -o FILE');
    }
    const a = await extractArchive(createReadStream(src.target), dir);
    return openArchiveImage(a, ref, src.tag);
  }
  const client = docker ?? new DockerClient(undefined, ctx.signal);
  return openDaemonImage(client, src.target, ref, dir);
}

/** docker-archive:FILE[:REF] — REF may hold colons too, so the first prefix that is an existing file is the file. */
async function splitArchiveTag(src: ParsedSource): Promise<void> {
  if ((await stat(src.target).catch(() => undefined))?.isFile()) return;
  for (let i = src.target.indexOf(':'); i > 0; i = src.target.indexOf(':', i + 1)) {
    if ((await stat(src.target.slice(0, i)).catch(() => undefined))?.isFile()) {
      src.tag = src.target.slice(i + 1);
      src.target = src.target.slice(0, i);
      return;
    }
  }
}

export async function openDaemonImage(client: DockerClient, name: string, ref: string, dir: string): Promise<SourceImage> {
  const info = await client.inspect(name);
  if (!info) {
    throw new Img2vmError(
      'imageNotFound',
      `image "${name}" is not in the local Docker daemon`,
      `pull or build it first (docker pull ${name}), or check the name with: docker image ls`,
    );
  }
  const a = await extractArchive(await client.save(info.Id), dir);
  const img = await openArchiveImage(a, ref);
  if (img.id !== info.Id) {
    throw new Img2vmError('badImage', `daemon saved ${img.id} for ${name}, expected ${info.Id}`, 'the image changed while it was read; try again');
  }
  return img;
}
