// docker-daemon:REF, and bare references: the local Docker daemon's image (docker save), else the registry.
import { Img2vmError } from '../../core/errors.js';
import { progress, type EventSink } from '../../core/events.js';
import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import type { Scope } from '../../core/scope.js';
import { ByteSource, TarReader } from '../../rootfs/tar.js';
import type { ImageConfig } from '../image.js';
import { initLayerFixup } from './daemon-fixups.js';
import { DockerClient, type ImageInspect } from '../docker-api.js';
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
    if (!src.bare)
      return openDaemonImage(client, src.target, ref, env.ctx, env.platformExplicit ? env.platform : undefined);
    return openBare(src.target, ref, client, env, env.pullContext);
  },
};

/** A bare reference: the daemon's image unless --pull always, then the cache and the registry. */
async function openBare(
  name: string,
  ref: string,
  client: DockerClient,
  r: TransportEnv,
  pullCtx: () => PullContext,
): Promise<SourceImage> {
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
      if (
        info &&
        (!r.platformExplicit || platformMatches({ os: info.Os, architecture: info.Architecture }, r.platform))
      ) {
        return await openDaemonImage(client, name, ref, r.ctx, undefined, info);
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
    throw new Img2vmError(
      'imageNotFound',
      `image "${name}" is not in the local Docker daemon (and is not a name a registry could have)`,
      'check the name with: docker image ls',
    );
  }
  try {
    return await openRegistryImage(dref, ref, pullCtx());
  } catch (e) {
    if (!(e instanceof RegistryError) || e.reason === 'protocol' || r.pull === 'always') throw e;
    if (daemonDown)
      throw new Img2vmError('daemonUnreachable', `${daemonDown.message}, and ${e.message}`, daemonDown.hint, {
        cause: e,
      });
    const why = mismatch ? ` for ${formatPlatform(r.platform)} (it has ${mismatch.Os}/${mismatch.Architecture})` : '';
    throw new Img2vmError(
      'imageNotFound',
      `image "${name}" is not in the local Docker daemon${why}, and ${e.message}`,
      `pull or build it first (docker pull ${name}), or check the name with: docker image ls; ${e.hint ?? ''}`.replace(
        /; $/,
        '',
      ),
      { cause: e },
    );
  }
}

/** Who made an export container: a run whose pid is gone left it behind, and the next run removes it. */
const EXPORT_LABEL = 'org.img2vm.export';

async function sweepExportContainers(client: DockerClient): Promise<void> {
  for (const c of await client.containersWithLabel(EXPORT_LABEL).catch(() => [])) {
    const [host, pid] = c.value.split(':');
    if (host !== hostname() || !pid || pidAlive(Number(pid))) continue;
    await client.removeContainer(c.id).catch(() => {});
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface DaemonImageContext {
  scope: Scope;
  sink?: EventSink;
}

/**
 * A daemon image read in one stream: the file system of a container made from it (never started) as the daemon
 * exports it, whiteouts already applied — measured at less than half the time of docker save, which also streams
 * the layers out of order (the base last), so a one-pass flattener would have to spool most of them. The export
 * keeps owners, modes, hard links, devices and security.capability, but, as docker save does for images it
 * built, no other xattr, and times in whole seconds; `docker save` to a docker-archive: keeps every byte of a
 * loaded image. The daemon adds mount points (/proc, /sys, /dev/pts, /dev/shm, /.dockerenv, /etc/hosts,
 * /etc/hostname, /etc/resolv.conf, /etc/mtab) where the image has none.
 */
export async function openDaemonImage(
  client: DockerClient,
  name: string,
  ref: string,
  ctx: DaemonImageContext,
  platform?: Platform,
  inspected?: ImageInspect,
): Promise<SourceImage> {
  const info = inspected ?? (await client.inspect(name));
  if (!info) {
    throw new Img2vmError(
      'imageNotFound',
      `image "${name}" is not in the local Docker daemon`,
      `pull or build it first (docker pull ${name}), or check the name with: docker image ls`,
    );
  }
  if (platform && !platformMatches({ os: info.Os, architecture: info.Architecture }, platform)) {
    throw new Img2vmError(
      'imageNotFound',
      `image "${name}" in the Docker daemon is ${info.Os}/${info.Architecture}, not ${formatPlatform(platform)}`,
      'pull the platform you want, or drop --platform',
    );
  }
  await sweepExportContainers(client);
  let container: Promise<string> | undefined;
  const containerId = (): Promise<string> =>
    (container ??= (async () => {
      const id = await client.createContainer(info.Id, { [EXPORT_LABEL]: `${hostname()}:${process.pid}` });
      // Removed by a client of its own: the run's client stops answering once the run is interrupted.
      ctx.scope.defer(`remove container ${id.slice(0, 12)}`, () =>
        new DockerClient(client.endpoint).removeContainer(id),
      );
      return id;
    })());
  const c = info.Config ?? {};
  const config: ImageConfig = {
    architecture: info.Architecture,
    os: info.Os,
    config: {
      Env: c.Env ?? null,
      Entrypoint: c.Entrypoint ?? null,
      Cmd: c.Cmd ?? null,
      WorkingDir: c.WorkingDir ?? null,
      User: c.User ?? null,
      Labels: c.Labels ?? null,
    },
    rootfs: { type: 'layers', diff_ids: info.RootFS?.Layers ?? [] },
  };
  return {
    ref,
    id: info.Id,
    daemonId: info.Id,
    transport: 'docker-daemon',
    config,
    layers: [
      {
        name: `the file system of ${name} (exported by the daemon)`,
        open: async () => {
          const res = await client.exportContainer(await containerId());
          // The export's length is not announced; the image's size is close to it.
          const bar = ctx.sink && progress(ctx.sink, 'source', 'bytes', info.Size, 'from the daemon');
          if (bar) {
            res.on('data', (d: Buffer) => bar.add(d.length));
            res.on('end', () => bar.end());
          }
          return res;
        },
      },
    ],
    afterFlatten: initLayerFixup(info, ctx.sink),
    readFile: async (path) => {
      const res = await client.archive(await containerId(), path);
      return res ? firstFileOf(res, path) : undefined;
    },
  };
}

/** The content of the one regular file in a container archive (≤ 1 MiB); undefined for a symlink or directory. */
async function firstFileOf(res: Readable, path: string): Promise<Buffer | undefined> {
  const tar = new TarReader(new ByteSource((res as AsyncIterable<Buffer>)[Symbol.asyncIterator]()));
  try {
    const h = await tar.next();
    if (!h || h.type !== 'file') return undefined;
    if (h.size > 1 << 20)
      throw new Img2vmError(
        'badImage',
        `${path} in the image is ${h.size} bytes, more than img2vm reads`,
        'check the image',
      );
    const parts: Buffer[] = [];
    await tar.readData((chunk) => parts.push(Buffer.from(chunk)));
    return Buffer.concat(parts);
  } finally {
    res.destroy();
  }
}
