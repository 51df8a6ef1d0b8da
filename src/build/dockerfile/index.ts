// The builders of `img2vm build`, by the id --builder spells, and the one way to run a build with cleanup.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Img2vmError } from '../../core/errors.js';
import { workDirPrefix } from '../../core/leftovers.js';
import type { Scope } from '../../core/scope.js';
import { preflight } from '../../tools/index.js';
import { buildahDockerfileBuilder } from './buildah.js';
import type { BuiltImage, DockerfileBuilder, DockerfileBuilderId, DockerfileRequest } from './builder.js';
import { dockerDockerfileBuilder } from './docker.js';

export { DOCKERFILE_BUILDER_IDS, type DockerfileBuilderId, type DockerfileRequest } from './builder.js';

export const DOCKERFILE_BUILDERS: Record<DockerfileBuilderId, DockerfileBuilder> = {
  docker: dockerDockerfileBuilder,
  buildah: buildahDockerfileBuilder,
};

/** auto: the daemon when one answers (its cache is where the user's builds already are), else buildah. */
const AUTO_ORDER: DockerfileBuilderId[] = ['docker', 'buildah'];

export async function chooseDockerfileBuilder(
  id: DockerfileBuilderId | 'auto',
  signal: AbortSignal,
): Promise<DockerfileBuilder> {
  const ids = id === 'auto' ? AUTO_ORDER : [id];
  const why: string[] = [];
  for (const i of ids) {
    const a = await DOCKERFILE_BUILDERS[i].available(signal);
    if (a.ok) return DOCKERFILE_BUILDERS[i];
    why.push(`${i}: ${a.why}`);
  }
  throw new Img2vmError(
    'toolMissing',
    `no builder for the Dockerfile: ${why.join('; ')}`,
    'start a Docker daemon (scripts/start-docker.sh) or install buildah (apt-get install buildah), or pick one with --builder',
  );
}

/** Checks what the user named before anything runs: the context is a directory, the Dockerfile a file, args K=V. */
export async function dockerfileRequest(o: {
  context?: string;
  file?: string;
  buildArgs?: string[];
  target?: string;
  platform?: string;
  tag?: string;
}): Promise<DockerfileRequest> {
  const context = resolve(o.context ?? '.');
  if (!(await stat(context).catch(() => undefined))?.isDirectory())
    throw new Img2vmError('usage', `build context ${context} is not a directory`, 'give the directory to build from');
  const file = resolve(context, o.file ?? 'Dockerfile');
  if (!(await stat(o.file ? resolve(o.file) : file).catch(() => undefined))?.isFile())
    throw new Img2vmError('usage', `no Dockerfile at ${o.file ?? file}`, 'give one with -f FILE');
  const bad = (o.buildArgs ?? []).filter((kv) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(kv));
  if (bad.length)
    throw new Img2vmError('usage', `--build-arg ${bad.join(', ')}: not NAME=VALUE`, 'e.g. --build-arg VERSION=1.2');
  return {
    context,
    file: o.file ? resolve(o.file) : file,
    buildArgs: o.buildArgs ?? [],
    ...(o.target ? { target: o.target } : {}),
    ...(o.platform ? { platform: o.platform } : {}),
    ...(o.tag ? { tag: o.tag } : {}),
  };
}

/** A hostname for the guest when none is given: the tag's name, else the context directory's. */
export function builtName(req: DockerfileRequest): string {
  return req.tag ?? basename(req.context);
}

/**
 * Builds the image; its private directory and (unless tagged) the image itself are released by the scope, so an
 * interrupted or failed conversion leaves nothing either.
 */
export async function buildDockerfile(
  req: DockerfileRequest,
  builder: DockerfileBuilder,
  ctx: { scope: Scope; signal: AbortSignal; onLine: (l: string) => void },
): Promise<BuiltImage> {
  preflight(builder.tools);
  const dir = await mkdtemp(join(process.env.TMPDIR || tmpdir(), workDirPrefix('build-')));
  ctx.scope.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  const built = await builder.build(req, { dir, signal: ctx.signal, onLine: ctx.onLine });
  ctx.scope.defer(`remove the built image ${built.id}`, () => built.release());
  return built;
}
