// `img2vm build` with docker: `docker build` against the daemon, the result read from the daemon by its id.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, which } from '../../tools/index.js';
import type { BuiltImage, DockerfileBuilder, DockerfileRequest } from './builder.js';
import { buildFailed, optionArgs } from './common.js';

/**
 * The host network (there is no bridge); --force-rm so a failing step leaves no container; the id written to a file
 * so the result is found without a tag.
 */
export function dockerBuildArgv(req: DockerfileRequest, iidfile: string): string[] {
  return ['build', '--network', 'host', '--force-rm', '--iidfile', iidfile, ...optionArgs(req), req.context];
}

/**
 * --no-prune: the step images before the last are the classic builder's cache (what makes an unchanged context
 * build again in seconds); only the image nobody named goes.
 */
export function dockerRemoveArgv(id: string): string[] {
  return ['image', 'rm', '--no-prune', id];
}

export function dockerRemoveContainerArgv(id: string): string[] {
  return ['rm', '--force', id];
}

export const dockerDockerfileBuilder: DockerfileBuilder = {
  id: 'docker',
  tools: ['docker'],
  async available(signal) {
    if (!which('docker')) return { ok: false, why: 'docker is not installed (apt-get install docker.io)' };
    const r = await run('docker', ['version', '--format', '{{.Server.Version}}'], { reject: false, signal });
    return r.exitCode === 0
      ? { ok: true }
      : { ok: false, why: `the Docker daemon does not answer (${r.stderr.trim().split('\n').pop() ?? ''})` };
  },
  async build(req, b): Promise<BuiltImage> {
    const iidfile = join(b.dir, 'iid');
    const tail: string[] = [];
    let running: string | undefined;
    // Without BuildKit (this docker has no buildx) the client drives the classic builder, which says which
    // container runs each step: the one to remove if the build is interrupted.
    const r = await run('docker', dockerBuildArgv(req, iidfile), {
      reject: false,
      signal: b.signal,
      env: { DOCKER_BUILDKIT: '0' },
      onLine: (l) => {
        const c = /^ ---> Running in ([0-9a-f]{12,64})$/.exec(l);
        if (c) running = c[1];
        else if (/^ ---> /.test(l)) running = undefined;
        tail.push(l);
        if (tail.length > 20) tail.shift();
        b.onLine(l);
      },
    }).catch(async (e: unknown) => {
      if (running) await run('docker', dockerRemoveContainerArgv(running), { reject: false });
      throw e;
    });
    if (r.exitCode !== 0) throw buildFailed('docker build', r.exitCode, tail);
    const id = (await readFile(iidfile, 'utf8')).trim();
    let released = false;
    return {
      id,
      ref: `docker-daemon:${id}`,
      async release() {
        if (released || req.tag) return;
        released = true;
        await run('docker', dockerRemoveArgv(id), { reject: false });
      },
    };
  },
};
