// `img2vm build`: a Dockerfile built by docker or buildah, its result converted (or planned) with no tag, push or save in between.
import { Option, type Command } from 'commander';
import {
  buildDockerfile,
  builtName,
  chooseDockerfileBuilder,
  DOCKERFILE_BUILDER_IDS,
  dockerfileRequest,
  type DockerfileBuilderId,
} from '../build/dockerfile/index.js';
import { Img2vmError } from '../core/errors.js';
import { hostnameFromImage } from '../core/options.js';
import type { Scope } from '../core/scope.js';
import { stderr } from './print.js';

/** The build's own options, as docker build spells them; `img2vm build` and `img2vm plan --build` take them. */
export function addBuildOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('-f, --file <dockerfile>', 'the Dockerfile (default: CONTEXT/Dockerfile)'))
    .addOption(
      new Option('--build-arg <name=value>', 'a build argument (repeatable)').argParser(
        (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
      ),
    )
    .addOption(new Option('--target <stage>', 'the stage of a multi-stage Dockerfile to build'))
    .addOption(new Option('-t, --tag <name>', 'keep the built image under this name (otherwise it is removed)'));
}

/** What `img2vm build` adds to the result: which builder built which image, and the name it was kept under. */
export interface BuildSummary {
  builder: DockerfileBuilderId;
  id: string;
  tag: string | null;
}

export interface BuildFlags {
  file?: string;
  buildArg?: string[];
  target?: string;
  tag?: string;
  builder?: string;
  platform?: string;
  hostname?: string;
  quiet?: boolean;
}

/** The Dockerfile builder --builder names, and the template builder (--init distro) that goes with it. */
function builders(flag: string | undefined): { dockerfile: DockerfileBuilderId | 'auto' } {
  const b = flag ?? 'auto';
  if (b === 'auto' || (DOCKERFILE_BUILDER_IDS as readonly string[]).includes(b))
    return { dockerfile: b as DockerfileBuilderId | 'auto' };
  throw new Img2vmError(
    'usage',
    `--builder ${b} cannot build a Dockerfile`,
    `img2vm build's builders are ${DOCKERFILE_BUILDER_IDS.join(', ')} (or auto)`,
  );
}

/**
 * Builds the context the flags name and returns the conversion options for its result: the image reference, a
 * hostname from the tag or the context, and the template builder that matches (docker with docker; runc, the
 * daemonless one, with buildah). The built image is released by the scope.
 */
export async function buildForConversion(
  context: string | undefined,
  flags: BuildFlags,
  given: Record<string, unknown>,
  ctx: { scope: Scope; signal: AbortSignal },
): Promise<{ options: Record<string, unknown> & { image: string }; build: BuildSummary }> {
  const req = await dockerfileRequest({
    context,
    file: flags.file,
    buildArgs: flags.buildArg,
    target: flags.target,
    platform: flags.platform,
    tag: flags.tag,
  });
  const builder = await chooseDockerfileBuilder(builders(flags.builder).dockerfile, ctx.signal);
  const built = await buildDockerfile(req, builder, {
    ...ctx,
    onLine: (l) => {
      if (!flags.quiet) stderr(`${l}\n`);
    },
  });
  return {
    options: {
      ...given,
      image: built.ref,
      builder: builder.id === 'docker' ? 'docker' : 'runc',
      ...(flags.hostname ? {} : { hostname: hostnameFromImage(builtName(req)) }),
    },
    build: { builder: builder.id, id: built.id, tag: req.tag ?? null },
  };
}
