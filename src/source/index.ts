// Resolves an image reference with its transport (docker://, docker-daemon:, oci:, oci-archive:, docker-archive:, bare) to a SourceImage.
import { createReadStream } from 'node:fs';
import { mkdtemp, stat } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { cacheDir } from '../core/paths.js';
import { extractArchive, openArchiveImage, resolveMember } from './archive.js';
import { BlobCache } from './blob-cache.js';
import { DockerClient, type ImageInspect } from './docker-api.js';
import type { SourceImage } from './image.js';
import { openOciLayout } from './oci.js';
import { defaultPlatform, formatPlatform, parsePlatform, platformMatches, type Platform } from './platform.js';
import { openRegistryImage, type PullContext, type PullPolicy } from './pull.js';
import { parseDockerReference, type DockerReference } from './reference.js';
import { RegistryError } from './registry.js';

export type { PullPolicy } from './pull.js';
export type { Platform } from './platform.js';
export { importToDaemon, type ImportOptions } from './daemon-load.js';
export { parsePlatform, defaultPlatform, formatPlatform } from './platform.js';
export { parseDockerReference, canonicalReference, familiarReference, type DockerReference } from './reference.js';

export type Transport = 'docker-daemon' | 'docker-archive' | 'docker' | 'oci' | 'oci-archive';

export interface ParsedSource {
  transport: Transport;
  /** Image name for the daemon or registry, or a file/directory path for archives and layouts. */
  target: string;
  tag?: string;
  /** No transport was given: the daemon if it has the image, else the registry (see OpenSourceOptions.pull). */
  bare?: true;
}

export const PULL_POLICIES = ['always', 'missing', 'never'] as const;

export interface OpenSourceOptions {
  /**
   * As docker spells it. missing (default): the daemon's image, else the cached one, else the
   * registry; always: the registry even if the daemon or the cache has the image (blobs already
   * cached are not fetched again); never: the daemon or the cache only.
   */
  pull?: PullPolicy;
  /** os/arch[/variant] of a multi-platform image; default: the host's (linux/amd64 on x86_64). */
  platform?: string | Platform;
  /** Registries (host[:port]) to reach over plain HTTP; loopback registries always are. */
  insecureRegistries?: string[];
  /** Root of the blob cache; default cacheDir() (~/.cache/img2vm). */
  cacheDir?: string;
  /** Environment for DOCKER_CONFIG/HOME (credentials); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Retry tuning (mostly for tests): attempts per request, first backoff, idle timeout. */
  registry?: { tries?: number; backoffMs?: number; timeoutMs?: number };
}

const KNOWN = ['docker-daemon', 'docker-archive', 'docker', 'oci', 'oci-archive'];

/** Splits TRANSPORT:REST; a bare reference (including host:port/name:tag) has no transport. */
export function parseSourceRef(ref: string): ParsedSource {
  if (!ref.trim()) throw new Img2vmError('usage', 'the image reference is empty', 'give an image, e.g. debian:bookworm');
  const m = /^([a-z-]+):(.*)$/s.exec(ref);
  // "docker:latest" is the image named docker; the transport is spelled docker://.
  if (m && KNOWN.includes(m[1]!) && !(m[1] === 'docker' && !m[2]!.startsWith('//'))) {
    const transport = m[1] as Transport;
    const rest = m[2]!;
    switch (transport) {
      case 'docker-daemon':
        if (!rest) throw new Img2vmError('usage', 'docker-daemon: needs an image', 'e.g. docker-daemon:debian:bookworm');
        return { transport, target: rest };
      case 'docker-archive':
        if (!rest) throw new Img2vmError('usage', 'docker-archive: needs a file', 'e.g. docker-archive:image.tar (made by docker save)');
        return { transport, target: rest };
      case 'docker': {
        const target = rest.slice(2);
        parseDockerReference(target);
        return { transport, target };
      }
      case 'oci':
      case 'oci-archive': {
        // As containers-image: the first colon separates the path from the tag.
        const i = rest.indexOf(':');
        const target = i < 0 ? rest : rest.slice(0, i);
        const tag = i < 0 ? '' : rest.slice(i + 1);
        if (!target) throw new Img2vmError('usage', `${transport}: needs a ${transport === 'oci' ? 'directory' : 'file'}`, `e.g. ${transport}:${transport === 'oci' ? 'layout-dir' : 'image.tar'}:TAG`);
        return tag ? { transport, target, tag } : { transport, target };
      }
    }
  }
  if (/\s/.test(ref)) throw new Img2vmError('usage', `"${ref}" is not a valid image reference`, 'references have no spaces, e.g. debian:bookworm');
  return { transport: 'docker-daemon', target: ref, bare: true };
}

interface Resolved {
  pull: PullPolicy;
  platform: Platform;
  platformExplicit: boolean;
}

function resolveOptions(o: OpenSourceOptions): Resolved {
  const pull = o.pull ?? 'missing';
  if (!PULL_POLICIES.includes(pull)) throw new Img2vmError('usage', `--pull ${String(pull)} is not one of ${PULL_POLICIES.join(', ')}`, 'e.g. --pull missing');
  const platform = o.platform === undefined ? defaultPlatform() : typeof o.platform === 'string' ? parsePlatform(o.platform) : o.platform;
  return { pull, platform, platformExplicit: o.platform !== undefined };
}

/**
 * Opens the image. Archives are unpacked below ctx.work (which the scope removes); registry blobs
 * go to the shared cache and are read from there. The returned image's `transport` says where it
 * came from, and `daemonId` is set when it is in the Docker daemon (else see importToDaemon).
 */
export async function openSource(ref: string, ctx: RunContext, docker?: DockerClient, options: OpenSourceOptions = {}): Promise<SourceImage> {
  const src = parseSourceRef(ref);
  const r = resolveOptions(options);
  const pullCtx = (): PullContext => ({
    ctx,
    cache: new BlobCache(options.cacheDir ?? cacheDir(options.env)),
    pull: r.pull,
    platform: r.platform,
    platformExplicit: r.platformExplicit,
    insecureRegistries: options.insecureRegistries ?? [],
    registry: options.registry,
    env: options.env,
  });
  const workDir = () => mkdtemp(join(ctx.work, 'source-'));
  switch (src.transport) {
    case 'docker-archive': {
      await splitArchiveTag(src);
      const st = await stat(src.target).catch(() => undefined);
      if (!st?.isFile()) {
        throw new Img2vmError('imageNotFound', `docker archive "${src.target}" does not exist or is not a file`, 'create one with: docker save IMAGE -o FILE');
      }
      const a = await extractArchive(createReadStream(src.target), await workDir());
      return openArchiveImage(a, ref, src.tag);
    }
    case 'oci':
      return openOciLayout(resolvePath(src.target), ref, { tag: src.tag, ...r, signal: ctx.signal });
    case 'oci-archive': {
      const st = await stat(src.target).catch(() => undefined);
      if (!st?.isFile()) {
        throw new Img2vmError('imageNotFound', `OCI archive "${src.target}" does not exist or is not a file`, 'give a tar of an OCI image layout (oci-archive:FILE[:TAG])');
      }
      const dir = await workDir();
      const a = await extractArchive(createReadStream(src.target), dir);
      return openOciLayout(dir, ref, { tag: src.tag, ...r, resolve: (m) => resolveMember(a, m), transport: 'oci-archive', signal: ctx.signal, label: `OCI archive ${src.target}` });
    }
    case 'docker':
      return openRegistryImage(parseDockerReference(src.target), ref, pullCtx());
    case 'docker-daemon': {
      const client = docker ?? new DockerClient(undefined, ctx.signal);
      if (!src.bare) return openDaemonImage(client, src.target, ref, await workDir(), r.platformExplicit ? r.platform : undefined);
      return openBare(src.target, ref, client, r, pullCtx, workDir);
    }
  }
}

/** A bare reference: the daemon's image unless --pull always, then the cache and the registry. */
async function openBare(name: string, ref: string, client: DockerClient, r: Resolved, pullCtx: () => PullContext, workDir: () => Promise<string>): Promise<SourceImage> {
  let daemonDown: Img2vmError | undefined;
  let mismatch: ImageInspect | undefined;
  let dref: DockerReference | undefined;
  let refError: unknown;
  try {
    dref = parseDockerReference(name);
  } catch (e) {
    refError = e;
  }
  // Only the daemon knows image IDs; anything else must be a valid reference before anyone is asked.
  if (refError && !/^(sha256:)?[a-f0-9]{1,64}$/.test(name)) throw refError;
  if (r.pull !== 'always') {
    try {
      const info = await client.inspect(name);
      if (info && (!r.platformExplicit || platformMatches({ os: info.Os, architecture: info.Architecture }, r.platform))) {
        return await openDaemonImage(client, name, ref, await workDir(), undefined, info);
      }
      mismatch = info;
    } catch (e) {
      if (!(e instanceof Img2vmError && e.kind === 'daemonUnreachable')) throw e;
      daemonDown = e;
    }
  }
  if (!dref) {
    if (daemonDown) throw daemonDown;
    if (r.pull === 'always') throw refError;
    throw new Img2vmError('imageNotFound', `image "${name}" is not in the local Docker daemon (and is not a name a registry could have)`, 'check the name with: docker image ls');
  }
  try {
    return await openRegistryImage(dref, ref, pullCtx());
  } catch (e) {
    if (!(e instanceof RegistryError) || e.reason === 'protocol' || r.pull === 'always') throw e;
    if (daemonDown) throw new Img2vmError('daemonUnreachable', `${daemonDown.message}, and ${e.message}`, daemonDown.hint, { cause: e });
    const why = mismatch ? ` for ${formatPlatform(r.platform)} (it has ${mismatch.Os}/${mismatch.Architecture})` : '';
    throw new Img2vmError('imageNotFound', `image "${name}" is not in the local Docker daemon${why}, and ${e.message}`, `pull or build it first (docker pull ${name}), or check the name with: docker image ls; ${e.hint ?? ''}`.replace(/; $/, ''), { cause: e });
  }
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

export async function openDaemonImage(client: DockerClient, name: string, ref: string, dir: string, platform?: Platform, inspected?: ImageInspect): Promise<SourceImage> {
  const info = inspected ?? (await client.inspect(name));
  if (!info) {
    throw new Img2vmError(
      'imageNotFound',
      `image "${name}" is not in the local Docker daemon`,
      `pull or build it first (docker pull ${name}), or check the name with: docker image ls`,
    );
  }
  if (platform && !platformMatches({ os: info.Os, architecture: info.Architecture }, platform)) {
    throw new Img2vmError('imageNotFound', `image "${name}" in the Docker daemon is ${info.Os}/${info.Architecture}, not ${formatPlatform(platform)}`, 'pull the platform you want, or drop --platform');
  }
  const a = await extractArchive(await client.save(info.Id), dir);
  const img = await openArchiveImage(a, ref);
  if (img.id !== info.Id) {
    throw new Img2vmError('badImage', `daemon saved ${img.id} for ${name}, expected ${info.Id}`, 'the image changed while it was read; try again');
  }
  return { ...img, daemonId: info.Id, transport: 'docker-daemon' };
}
