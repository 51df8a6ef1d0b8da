// `img2vm build` with no daemon: `buildah bud` into containers-storage, the result pushed as an OCI layout to a private directory.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, which } from '../../tools/index.js';
import type { BuiltImage, DockerfileBuilder, DockerfileRequest } from './builder.js';
import { buildFailed, optionArgs } from './common.js';

/**
 * --layers keeps each step's image as the cache an unchanged context is built from again; --force-rm removes the
 * working container of a failing step too; the host network, as every img2vm build has it.
 */
export function buildahBudArgv(req: DockerfileRequest, iidfile: string): string[] {
  return ['bud', '--layers', '--force-rm', '--network', 'host', '--iidfile', iidfile, ...optionArgs(req), req.context];
}

/** Uncompressed: the layers are read once, right away, and compressing them would only cost time. */
export function buildahPushArgv(id: string, layout: string): string[] {
  return ['push', '--quiet', '--disable-compression', id, `oci:${layout}:built`];
}

/**
 * buildah rmi also removes the untagged step images below the image, which are the cache --layers made; podman
 * (same storage) can leave them, so it removes the image when it is installed.
 */
export function buildahRemoveArgv(id: string): { tool: 'podman' | 'buildah'; argv: string[] } {
  return which('podman') ? { tool: 'podman', argv: ['rmi', '--no-prune', id] } : { tool: 'buildah', argv: ['rmi', id] };
}

export const buildahDockerfileBuilder: DockerfileBuilder = {
  id: 'buildah',
  tools: ['buildah'],
  async available() {
    if (!which('buildah')) return { ok: false, why: 'buildah is not installed (apt-get install buildah)' };
    // Rootless buildah maps ids through /etc/subuid, so the built files would not get the owners the guest needs.
    if (process.getuid?.() !== 0) return { ok: false, why: 'the buildah builder needs root here' };
    return { ok: true };
  },
  async build(req, b): Promise<BuiltImage> {
    const iidfile = join(b.dir, 'iid');
    const tail: string[] = [];
    const r = await run('buildah', buildahBudArgv(req, iidfile), {
      reject: false,
      signal: b.signal,
      env: { TMPDIR: b.dir },
      onLine: (l) => {
        tail.push(l);
        if (tail.length > 20) tail.shift();
        b.onLine(l);
      },
    });
    if (r.exitCode !== 0) throw buildFailed('buildah bud', r.exitCode, tail);
    const id = (await readFile(iidfile, 'utf8')).trim().replace(/^sha256:/, '');
    let released = false;
    const release = async () => {
      if (released || req.tag) return;
      released = true;
      const rm = buildahRemoveArgv(id);
      await run(rm.tool, rm.argv, { reject: false });
    };
    const layout = join(b.dir, 'oci');
    try {
      await run('buildah', buildahPushArgv(id, layout), { signal: b.signal, env: { TMPDIR: b.dir } });
    } catch (e) {
      await release();
      throw e;
    }
    return { id, ref: `oci:${layout}:built`, release };
  },
};
