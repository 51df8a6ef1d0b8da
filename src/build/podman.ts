// The podman builder: no daemon; podman builds the rendered template on the image in its own storage, cached there as img2vm-cache:<key>.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Env } from '../core/context.js';
import type { BuildRecipe } from '../core/plan.js';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { progress } from '../core/events.js';
import { sha256 } from '../source/digest.js';
import type { SourceImage } from '../source/image.js';
import { openSource } from '../source/index.js';
import { run, which } from '../tools/index.js';
import { renderRecipe, type RenderedRecipe } from './recipe.js';
import type { Builder, BuildInput } from './builder.js';
import { openStore } from '../store/index.js';
import { BuildCache } from './build-cache.js';
import { buildKey } from './key.js';
import { writeOciArchive } from './oci-archive-out.js';
import { runPodmanBuild } from './podman-build.js';

/** Bump when the way a podman build is done changes, so old cache entries are not reused. */
export const PODMAN_BUILDER_VERSION = '1';
export const PODMAN_CACHE_REPO = 'localhost/img2vm-cache';
export const PODMAN_SOURCE_REPO = 'localhost/img2vm-source';

const log = (ctx: RunContext, level: 'info' | 'warn' | 'debug', message: string) =>
  ctx.sink({ type: 'log', level, stage: 'guest', message });

export function podmanInfoArgv(): string[] {
  return ['info', '--format', 'json'];
}

export function podmanExistsArgv(ref: string): string[] {
  return ['image', 'exists', ref];
}

export function podmanLoadArgv(file: string): string[] {
  return ['load', '--quiet', '--input', file];
}

/**
 * The host network (no bridge exists here, and only package managers run); never a registry (--pull=never: the
 * base was loaded); one layer for the whole build (--layers=false keeps no intermediate images).
 */
export function podmanBuildArgv(o: {
  tag: string;
  context: string;
  labels: Record<string, string>;
  platform?: string;
}): string[] {
  const labels = Object.entries(o.labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  return [
    'build',
    '--network',
    'host',
    '--pull=never',
    '--layers=false',
    '--format',
    'oci',
    // Another architecture's base: its steps run under the host's binfmt_misc emulator.
    ...(o.platform ? ['--platform', o.platform] : []),
    ...labels,
    '--file',
    join(o.context, 'Dockerfile'),
    '--tag',
    o.tag,
    o.context,
  ];
}

/** Uncompressed: the layers are read once, right away, and compressing them would only cost time. */
export function podmanSaveArgv(tag: string, file: string): string[] {
  return ['save', '--uncompressed', '--format', 'oci-archive', '--output', file, tag];
}

interface Planned {
  rendered: RenderedRecipe;
  key: string;
  tag: string;
  base: string;
}

async function planPodman(img: SourceImage, recipe: BuildRecipe): Promise<Planned> {
  // The id podman will know the base by: the digest of the config bytes it is loaded with.
  const base = img.configBytes ? sha256(img.configBytes) : img.id;
  const rendered = await renderRecipe(recipe, { base, ...recipe.values });
  const key = buildKey('podman', PODMAN_BUILDER_VERSION, base, rendered);
  return { rendered, key, base, tag: `${PODMAN_CACHE_REPO}:${key.slice(0, 32)}` };
}

const tagOf = (ref: string) => ref.slice(ref.lastIndexOf(':') + 1);

async function exists(ref: string, signal: AbortSignal): Promise<boolean> {
  return (await run('podman', podmanExistsArgv(ref), { reject: false, signal })).exitCode === 0;
}

/**
 * Reads the built image out of podman's storage into the work directory, as an oci-archive that stays there (its
 * layers are read from it in place) until the image is done with or the run ends.
 */
async function readBuilt(env: Env, tag: string): Promise<SourceImage> {
  const dir = await mkdtemp(join(env.work, 'podman-out-'));
  const file = join(dir, 'image.tar');
  try {
    await run('podman', podmanSaveArgv(tag, file), { signal: env.signal });
    return { ...(await openSource(`oci-archive:${file}`, env)), workDir: dir };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Makes the base image available in podman's storage (loaded from an oci-archive written from any source). */
async function ensureBase(input: BuildInput, env: Env, p: Planned): Promise<void> {
  await new BuildCache(openStore()).touchPodman('source', p.base.slice(7, 23));
  if (await exists(p.base, env.signal)) return;
  const dir = await mkdtemp(join(env.work, 'podman-load-'));
  try {
    const file = join(dir, 'base.tar');
    const id = await writeOciArchive(
      input.image,
      file,
      `${PODMAN_SOURCE_REPO}:${p.base.slice(7, 23)}`,
      dir,
      env.signal,
    );
    await run('podman', podmanLoadArgv(file), { signal: env.signal });
    if (id !== p.base || !(await exists(p.base, env.signal))) {
      throw new Img2vmError(
        'toolFailed',
        `podman load did not keep the image as ${p.base}`,
        'see podman images; podman may have re-encoded the config',
      );
    }
    log(
      env,
      'debug',
      `loaded ${input.image.ref} into podman's storage as ${PODMAN_SOURCE_REPO}:${p.base.slice(7, 23)}`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function writeContext(dir: string, rendered: RenderedRecipe): Promise<void> {
  await writeFile(join(dir, 'Dockerfile'), rendered.dockerfile);
  for (const f of rendered.files) {
    const p = join(dir, f.path);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, f.content, { mode: f.mode });
  }
}

async function build(input: BuildInput, ctx: Env, p: Planned): Promise<void> {
  await ensureBase(input, ctx, p);
  const context = await mkdtemp(join(ctx.work, 'podman-ctx-'));
  // Where podman puts its steps' bundles: private, so an abort can find (and kill) exactly this build's step.
  const steps = await mkdtemp(join(ctx.work, 'podman-steps-'));
  try {
    await writeContext(context, p.rendered);
    const bar = progress(ctx.sink, 'guest', 'entries', undefined, 'build steps');
    const tail: string[] = [];
    const labels = { 'org.img2vm.base': p.base, 'org.img2vm.template': input.recipe.template, 'org.img2vm.key': p.key };
    const argv = podmanBuildArgv({ tag: p.tag, context, labels, platform: input.platform });
    const code = await runPodmanBuild(argv, steps, ctx.signal, (l) => {
      const m = /^STEP (\d+)\/(\d+)/.exec(l);
      if (m) {
        bar.setTotal(Number(m[2]));
        bar.set(Number(m[1]) - 1);
      }
      tail.push(l);
      if (tail.length > 15) tail.shift();
      log(ctx, 'debug', l);
    });
    bar.end();
    if (code !== 0)
      throw new Img2vmError(
        'buildFailed',
        `guest build failed: podman build exited with ${code}`,
        `last build output:\n${tail.join('\n')}`,
      );
  } finally {
    await rm(context, { recursive: true, force: true });
    await rm(steps, { recursive: true, force: true });
  }
}

let works: Promise<{ ok: true } | { ok: false; why: string }> | undefined;

/** Whether podman runs here at all (storage, cgroups, runtime): `podman info` fails when it cannot. */
function podmanWorks(): Promise<{ ok: true } | { ok: false; why: string }> {
  works ??= (async () => {
    const r = await run('podman', podmanInfoArgv(), { reject: false });
    if (r.exitCode === 0) return { ok: true as const };
    const why = (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ');
    return {
      ok: false as const,
      why: `podman does not work here: podman info failed (${why || `exit ${r.exitCode}`})`,
    };
  })();
  return works;
}

export const podmanBuilder: Builder = {
  id: 'podman',
  async available() {
    if (!which('podman'))
      return {
        ok: false,
        why: 'the podman builder needs podman, which is not installed (install podman: apt-get install podman)',
      };
    // Rootless podman maps ids through /etc/subuid, so the built files would not get the owners the guest needs.
    if (process.getuid?.() !== 0)
      return {
        ok: false,
        why: 'the podman builder needs root (rootless podman cannot give the built files their real owners)',
      };
    return podmanWorks();
  },
  async lookup(input, env) {
    const p = await planPodman(input.image, input.recipe);
    if (!(await exists(p.tag, env.signal))) return undefined;
    await new BuildCache(openStore()).touchPodman('cache', tagOf(p.tag));
    return { image: await readBuilt(env, p.tag), ref: p.tag };
  },
  async build(input, env) {
    const p = await planPodman(input.image, input.recipe);
    const cached = await exists(p.tag, env.signal);
    if (!cached) await build(input, env, p);
    await new BuildCache(openStore()).touchPodman('cache', tagOf(p.tag));
    return { image: await readBuilt(env, p.tag), cached, ref: p.tag };
  },
};
