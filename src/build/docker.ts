// The docker builder: renders a distribution's template and builds it on top of the image, cached by content.
import type { BuildRecipe } from '../core/plan.js';
import { createHash } from 'node:crypto';
import { readdir, readFile, lstat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import type { RunContext } from '../core/context.js';
import { progress } from '../core/events.js';
import { importToDaemon, openDaemonImage } from '../source/index.js';
import type { Builder, BuildInput } from './builder.js';
import { TEMPLATES_DIR } from '../core/paths.js';
import { DockerClient } from '../source/docker-api.js';
import { testHook } from '../core/test-hook.js';
import { renderTemplate } from './template.js';
import { tarStream } from '../core/lazy.js';

/** Bump when the way a build is done changes, so old cache entries are not reused. */
const CACHE_VERSION = '1';
export const CACHE_REPO = 'img2vm-cache';

interface TemplateFile {
  path: string;
  mode: number;
  content: Buffer;
}

async function readTree(root: string): Promise<TemplateFile[]> {
  const out: TemplateFile[] = [];
  const walk = async (dir: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const st = await lstat(p);
      if (st.isDirectory()) await walk(p);
      else if (st.isFile()) out.push({ path: relative(root, p), mode: st.mode & 0o777, content: await readFile(p) });
    }
  };
  await walk(root);
  return out;
}

export interface BuildPlan {
  /** The tag of the built image in the daemon, derived from everything that affects it. */
  tag: string;
  key: string;
  files: TemplateFile[];
}

/** Renders the template and derives the cache key: base image id + every template byte + values. */
export async function planBuild(baseId: string, recipe: BuildRecipe): Promise<BuildPlan> {
  const dir = join(TEMPLATES_DIR, recipe.template);
  const files = await readTree(dir);
  const rendered = files.map((f) =>
    f.path === 'Dockerfile'
      ? {
          ...f,
          content: Buffer.from(
            renderTemplate(
              f.content.toString('utf8'),
              { base: baseId, ...recipe.values },
              `templates/${recipe.template}/Dockerfile`,
            ),
          ),
        }
      : f,
  );
  const h = createHash('sha256').update(`img2vm-build:${CACHE_VERSION}\0${baseId}\0`);
  for (const f of rendered) h.update(`${f.path}\0${f.mode}\0${f.content.length}\0`).update(f.content);
  const key = h.digest('hex');
  return { key, tag: `${CACHE_REPO}:${key.slice(0, 32)}`, files: rendered };
}

function contextTar(files: TemplateFile[]): Readable {
  const pack = tarStream().pack();
  for (const f of files) pack.entry({ name: f.path, mode: f.mode, mtime: new Date(0), uid: 0, gid: 0 }, f.content);
  pack.finalize();
  return pack as unknown as Readable;
}

export interface BuildResult {
  tag: string;
  cached: boolean;
}

/** Builds (or finds in the cache) the bootable variant of baseId in the daemon. */
export async function dockerBuild(
  client: DockerClient,
  baseId: string,
  recipe: BuildRecipe,
  ctx: RunContext,
  platform?: string,
): Promise<BuildResult> {
  const plan = await planBuild(baseId, recipe);
  if (await client.inspect(plan.tag)) return { tag: plan.tag, cached: true };
  const bar = progress(ctx.sink, 'guest', 'entries', undefined, 'build steps');
  let running: string | undefined;
  try {
    await client.build(Readable.from(contextTar(plan.files)), {
      tag: plan.tag,
      ...(platform ? { platform } : {}),
      labels: { 'org.img2vm.base': baseId, 'org.img2vm.template': recipe.template, 'org.img2vm.key': plan.key },
      onLine: (l) => {
        // The classic builder announces "Step N/M : ..." before each instruction, and the container a RUN runs in.
        const m = /^Step (\d+)\/(\d+)/.exec(l);
        if (m) {
          bar.setTotal(Number(m[2]));
          bar.set(Number(m[1]) - 1);
        }
        const c = /^ ---> Running in ([0-9a-f]{12,64})$/.exec(l);
        if (c) {
          running = c[1];
          void testHook('during', 'guest/build-step');
        } else if (/^ ---> (?!Running in )/.test(l)) running = undefined;
        ctx.sink({ type: 'log', level: 'debug', stage: 'guest', message: l });
      },
    });
  } catch (e) {
    // The daemon cancels a build whose client went away, but in its own time: its step container goes now.
    if (ctx.signal.aborted && running)
      await new DockerClient(client.endpoint).removeContainer(running).catch(() => undefined);
    throw e;
  }
  bar.end();
  return { tag: plan.tag, cached: false };
}

/** The docker builder: the template is a Dockerfile built by the daemon on top of the image, which it must have. */
export const dockerBuilder: Builder = {
  id: 'docker',
  async available(env) {
    const docker = new DockerClient(undefined, env.signal);
    try {
      await docker.ping();
      return { ok: true };
    } catch (e) {
      return {
        ok: false,
        why: `the docker builder's daemon is not reachable at ${docker.endpoint.socketPath}`,
        cause: e,
      };
    }
  },
  async lookup(input: BuildInput, env) {
    const img = input.image;
    const docker = new DockerClient(undefined, env.signal);
    const plan = await planBuild(img.daemonId ?? img.id, input.recipe);
    if (!(await docker.inspect(plan.tag))) return undefined;
    return { image: await openDaemonImage(docker, plan.tag, input.ref, env), ref: plan.tag };
  },
  async build(input: BuildInput, env) {
    const img = input.image;
    const docker = new DockerClient(undefined, env.signal);
    // Images from registries and archives are loaded into the daemon (unchanged, same id) to build on.
    const base = img.daemonId ?? (await importToDaemon(img, docker, env));
    const built = await dockerBuild(docker, base, input.recipe, env, input.platform);
    const out = await openDaemonImage(docker, built.tag, input.ref, env);
    return { image: out, cached: built.cached, ref: built.tag };
  },
};
