// Resolves an image reference with its transport (docker://, docker-daemon:, oci:, oci-archive:, docker-archive:, bare) to a SourceImage.
import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { cacheDir } from '../core/paths.js';
import { openStore } from '../store/index.js';
import { BlobCache } from './blob-cache.js';
import { DockerClient } from './docker-api.js';
import type { SourceImage } from './image.js';
import { defaultPlatform, parsePlatform, type Platform } from './platform.js';
import type { PullPolicy } from './pull.js';
import { parseDockerReference } from './reference.js';
import type { TransportEnv } from './transport.js';
import { TRANSPORTS } from './transports/index.js';

export type { PullPolicy } from './pull.js';
export type { Platform } from './platform.js';
export { importToDaemon, type ImportOptions } from './daemon-load.js';
export { parsePlatform, defaultPlatform, formatPlatform } from './platform.js';
export { openDaemonImage } from './transports/docker-daemon.js';
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
  /**
   * Hash cached blobs again each time they are used. Off by default: a blob is verified as it enters the cache
   * (its digest checked as the bytes arrive) and trusted after; `img2vm cache verify` re-checks the whole cache.
   */
  verifyCache?: boolean;
  /** Environment for DOCKER_CONFIG/HOME (credentials); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Retry tuning (mostly for tests): attempts per request, first backoff, idle timeout. */
  registry?: { tries?: number; backoffMs?: number; timeoutMs?: number };
}

const KNOWN = ['docker-daemon', 'docker-archive', 'docker', 'oci', 'oci-archive'];

/** Splits TRANSPORT:REST; a bare reference (including host:port/name:tag) has no transport. */
export function parseSourceRef(ref: string): ParsedSource {
  if (!ref.trim())
    throw new Img2vmError('usage', 'the image reference is empty', 'give an image, e.g. debian:bookworm');
  const m = /^([a-z-]+):(.*)$/s.exec(ref);
  // "docker:latest" is the image named docker; the transport is spelled docker://.
  if (m && KNOWN.includes(m[1]!) && !(m[1] === 'docker' && !m[2]!.startsWith('//'))) {
    const transport = m[1] as Transport;
    const rest = m[2]!;
    switch (transport) {
      case 'docker-daemon':
        if (!rest)
          throw new Img2vmError('usage', 'docker-daemon: needs an image', 'e.g. docker-daemon:debian:bookworm');
        return { transport, target: rest };
      case 'docker-archive':
        if (!rest)
          throw new Img2vmError(
            'usage',
            'docker-archive: needs a file',
            'e.g. docker-archive:image.tar (made by docker save)',
          );
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
        if (!target)
          throw new Img2vmError(
            'usage',
            `${transport}: needs a ${transport === 'oci' ? 'directory' : 'file'}`,
            `e.g. ${transport}:${transport === 'oci' ? 'layout-dir' : 'image.tar'}:TAG`,
          );
        return tag ? { transport, target, tag } : { transport, target };
      }
    }
  }
  if (/\s/.test(ref))
    throw new Img2vmError(
      'usage',
      `"${ref}" is not a valid image reference`,
      'references have no spaces, e.g. debian:bookworm',
    );
  return { transport: 'docker-daemon', target: ref, bare: true };
}

export interface Resolved {
  pull: PullPolicy;
  platform: Platform;
  platformExplicit: boolean;
}

function resolveOptions(o: OpenSourceOptions): Resolved {
  const pull = o.pull ?? 'missing';
  if (!PULL_POLICIES.includes(pull))
    throw new Img2vmError(
      'usage',
      `--pull ${String(pull)} is not one of ${PULL_POLICIES.join(', ')}`,
      'e.g. --pull missing',
    );
  const platform =
    o.platform === undefined
      ? defaultPlatform()
      : typeof o.platform === 'string'
        ? parsePlatform(o.platform)
        : o.platform;
  return { pull, platform, platformExplicit: o.platform !== undefined };
}

/**
 * Opens the image with the transport its reference names. Archives are unpacked below ctx.work (which the
 * scope removes); registry blobs go to the shared cache and are read from there. The returned image's
 * `transport` says where it came from, and `daemonId` is set when it is in the Docker daemon.
 */
export async function openSource(
  ref: string,
  ctx: RunContext,
  docker?: DockerClient,
  options: OpenSourceOptions = {},
): Promise<SourceImage> {
  const src = parseSourceRef(ref);
  const r = resolveOptions(options);
  let client = docker;
  const env: TransportEnv = {
    ctx,
    ...r,
    docker: () => (client ??= new DockerClient(undefined, ctx.signal)),
    pullContext: () => ({
      ctx,
      cache: new BlobCache(
        openStore(options.cacheDir ?? cacheDir(options.env), { verify: options.verifyCache ? 'read' : 'entry' }),
      ),
      pull: r.pull,
      platform: r.platform,
      platformExplicit: r.platformExplicit,
      insecureRegistries: options.insecureRegistries ?? [],
      registry: options.registry,
      env: options.env,
    }),
    workDir: () => mkdtemp(join(ctx.work, 'source-')),
  };
  return TRANSPORTS[src.transport].open(src, ref, env);
}
