// docker-daemon:REF, and bare references: the local Docker daemon's image (docker save), else the registry.
import { Img2vmError } from '../../core/errors.js';
import { progress, type EventSink } from '../../core/events.js';
import { extractArchive, openArchiveImage } from '../archive.js';
import type { DockerClient, ImageInspect } from '../docker-api.js';
import type { SourceImage } from '../image.js';
import { formatPlatform, platformMatches, type Platform } from '../platform.js';
import { openRegistryImage, type PullContext } from '../pull.js';
import { parseDockerReference, type DockerReference } from '../reference.js';
import { RegistryError } from '../registry.js';
import type { Transport, TransportEnv } from '../transport.js';

export const dockerDaemon: Transport = {
  id: 'docker-daemon',
  async open(src, ref, env) {
    const client = env.docker();
    if (!src.bare) return openDaemonImage(client, src.target, ref, await env.workDir(), env.platformExplicit ? env.platform : undefined, undefined, env.ctx.sink);
    return openBare(src.target, ref, client, env, env.pullContext, env.workDir);
  },
};

/** A bare reference: the daemon's image unless --pull always, then the cache and the registry. */
async function openBare(name: string, ref: string, client: DockerClient, r: TransportEnv, pullCtx: () => PullContext, workDir: () => Promise<string>): Promise<SourceImage> {
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
        return await openDaemonImage(client, name, ref, await workDir(), undefined, info, r.ctx.sink);
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

export async function openDaemonImage(client: DockerClient, name: string, ref: string, dir: string, platform?: Platform, inspected?: ImageInspect, sink?: EventSink): Promise<SourceImage> {
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
  // docker save's size is not known ahead (the image's Size counts no tar headers): bytes and rate only.
  const bar = sink && progress(sink, 'source', 'bytes', undefined, 'from the daemon');
  const a = await extractArchive(await client.save(info.Id), dir, bar && ((n) => bar.add(n)));
  bar?.end();
  const img = { ...(await openArchiveImage(a, ref)), workDir: dir };
  if (img.id !== info.Id) {
    throw new Img2vmError('badImage', `daemon saved ${img.id} for ${name}, expected ${info.Id}`, 'the image changed while it was read; try again');
  }
  return { ...img, daemonId: info.Id, transport: 'docker-daemon' };
}
