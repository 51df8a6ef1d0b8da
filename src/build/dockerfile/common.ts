// What the Dockerfile builders share: the options both spell as docker does, and the error a failed build is.
import { Img2vmError } from '../../core/errors.js';
import type { DockerfileRequest } from './builder.js';

/** -f, --build-arg, --target, --platform and -t, as docker build and buildah bud both take them. */
export function optionArgs(req: DockerfileRequest): string[] {
  return [
    '--file',
    req.file,
    ...req.buildArgs.flatMap((kv) => ['--build-arg', kv]),
    ...(req.target ? ['--target', req.target] : []),
    ...(req.platform ? ['--platform', req.platform] : []),
    ...(req.tag ? ['--tag', req.tag] : []),
  ];
}

export function buildFailed(what: string, code: number, tail: string[]): Img2vmError {
  return new Img2vmError(
    'imageBuildFailed',
    `${what} failed (exit ${code}): ${tail.at(-1) ?? 'no output'}`,
    "fix the Dockerfile or the context (the builder's output says which step failed); nothing was converted or kept",
  );
}
