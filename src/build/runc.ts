// The runc builder: no daemon; the image is flattened into the tree and made real in an OCI bundle, each recipe step runs in its own runc container, the result is one cached layer.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Env } from '../core/context.js';
import type { BuildRecipe } from '../core/plan.js';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { progress } from '../core/events.js';
import { LayerFlattener } from '../rootfs/layers.js';
import { materialise } from '../rootfs/materialise.js';
import { PATH_MAX } from '../rootfs/limits.js';
import { SpoolStore } from '../rootfs/spool-store.js';
import { showPath } from '../rootfs/tree-path.js';
import type { BinName, DirNode } from '../rootfs/tree.js';
import { existsInRoot, removeInRoot } from '../rootfs/inroot.js';
import { sha256 } from '../source/digest.js';
import type { ImageConfig, SourceImage } from '../source/image.js';
import { run, which } from '../tools/index.js';
import { renderRecipe, type RenderedRecipe, type Step } from './recipe.js';
import type { Builder, BuildInput } from './builder.js';
import { BuildCache, type BuildRecord } from './build-cache.js';
import { buildKey } from './key.js';
import {
  containerId,
  ownerOf,
  runcDeleteArgv,
  runcKillArgv,
  runcListArgv,
  runcRunArgv,
  runtimeSpec,
  stepEnv,
} from './runtime-spec.js';
import { applyEnv, copyStep, ensureWorkdir, recipeEnv, stepUser } from './steps.js';
import { writeTreeTar } from './tree-tar.js';
import { testHook } from '../core/test-hook.js';
import { pidAlive } from '../core/leftovers.js';
import { openStore } from '../store/index.js';

/** Bump when the way a runc build is done (or its layer written) changes, so old cache entries are not reused. */
export const RUNC_BUILDER_VERSION = '3';

const log = (ctx: RunContext, level: 'info' | 'warn' | 'debug', message: string) =>
  ctx.sink({ type: 'log', level, stage: 'guest', message });

interface Planned {
  rendered: RenderedRecipe;
  key: string;
  ref: string;
}

async function planRunc(img: SourceImage, recipe: BuildRecipe): Promise<Planned> {
  const rendered = await renderRecipe(recipe, { base: img.id, ...recipe.values });
  const key = buildKey('runc', RUNC_BUILDER_VERSION, img.id, rendered);
  return { rendered, key, ref: `runc:${key.slice(0, 32)}` };
}

/** Removes containers a killed img2vm process left behind (their ids carry its pid). */
export async function sweepContainers(): Promise<void> {
  const r = await run('runc', runcListArgv(), { reject: false });
  if (r.exitCode !== 0) return;
  let list: { id?: unknown }[];
  try {
    list = (JSON.parse(r.stdout || 'null') as { id?: unknown }[] | null) ?? [];
  } catch {
    return;
  }
  for (const c of list) {
    if (typeof c.id !== 'string') continue;
    const pid = ownerOf(c.id);
    if (pid !== undefined && pid !== process.pid && !pidAlive(pid))
      await run('runc', runcDeleteArgv(c.id), { reject: false });
  }
}

async function runStep(
  input: BuildInput,
  ctx: Env,
  bundle: string,
  step: Extract<Step, { kind: 'run' }>,
  id: string,
  resolvConf: string,
): Promise<void> {
  const rootfs = join(bundle, 'rootfs');
  const user = stepUser(rootfs, step);
  ensureWorkdir(rootfs, step.workdir);
  const spec = runtimeSpec(
    {
      script: step.script,
      env: stepEnv(input.image.config.config?.Env, step.env, user.home),
      uid: user.uid,
      gid: user.gid,
      additionalGids: user.additionalGids,
      cwd: step.workdir,
      network: step.network,
      resolvConf,
    },
    process.arch,
  );
  await writeFile(join(bundle, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`);
  // runc makes the mount point when the image has none; it must not stay behind as an empty file.
  const placeholder = step.network && !existsInRoot(rootfs, 'etc/resolv.conf');
  const tail: string[] = [];
  // runc relays SIGTERM to the container's init, which a shell ignores: kill it outright, at once.
  const onAbort = () => void run('runc', runcKillArgv(id), { reject: false });
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const res = await run('runc', runcRunArgv(bundle, id), {
      input: '',
      signal: ctx.signal,
      reject: false,
      onLine: (l) => {
        tail.push(l);
        if (tail.length > 15) tail.shift();
        log(ctx, 'debug', l);
        // The step's container is running: it goes on while a test signals (see core/test-hook.ts).
        void testHook('during', 'guest/build-step');
      },
    });
    if (res.exitCode !== 0) {
      throw new Img2vmError(
        'buildFailed',
        `guest build failed: the step at line ${step.line} of the template (RUN ${step.script.slice(0, 60).trim()}…) exited with ${res.exitCode}`,
        `last build output:\n${tail.join('\n') || res.stderr.split('\n').slice(-15).join('\n')}`,
      );
    }
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    await run('runc', runcKillArgv(id), { reject: false });
    await run('runc', runcDeleteArgv(id), { reject: false });
    if (placeholder && existsInRoot(rootfs, 'etc/resolv.conf')) removeInRoot(rootfs, 'etc/resolv.conf');
  }
}

/** The built image's config: the base's, with the recipe's ENV, one layer, and where it came from. */
export function builtConfig(
  base: ImageConfig,
  env: Record<string, string>,
  layerDigest: string,
  labels: Record<string, string>,
  created: string,
): ImageConfig {
  const inner = base.config ?? {};
  return {
    ...base,
    created,
    config: { ...inner, Env: applyEnv(inner.Env, env), Labels: { ...(inner.Labels ?? {}), ...labels } },
    rootfs: { type: 'layers', diff_ids: [layerDigest] },
    history: [
      {
        created,
        created_by:
          `img2vm runc builder ${RUNC_BUILDER_VERSION}: template ${labels['org.img2vm.template'] ?? ''}`.trim(),
      },
    ],
  };
}

/** The build's creation time as image configs spell it: the run's epoch (SOURCE_DATE_EPOCH, else now). */
function createdAt(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

async function hostResolvConf(dest: string): Promise<void> {
  let text: string;
  try {
    text = await readFile('/etc/resolv.conf', 'utf8');
  } catch (e) {
    throw new Img2vmError(
      'buildFailed',
      'the host has no readable /etc/resolv.conf, which the guest build needs to fetch packages',
      'configure DNS on the host',
      { cause: e },
    );
  }
  await writeFile(dest, text, { mode: 0o644 });
}

/**
 * The tree is made in the bundle relative to open directories, however deep; but runc, getfattr, the layer writer
 * and the removal of the bundle reach its files by whole host paths, which Linux holds to PATH_MAX.
 */
export function checkBundlePaths(root: DirNode, rootfs: string): void {
  let longest = 0;
  let at = '';
  const stack: [DirNode, BinName][] = [[root, '']];
  for (let e = stack.pop(); e; e = stack.pop()) {
    const [dir, path] = e;
    for (const [name, node] of dir.entries) {
      if (path.length + 1 + name.length > longest) [longest, at] = [path.length + 1 + name.length, `${path}/${name}`];
      if (node.kind === 'dir') stack.push([node, `${path}/${name}`]);
    }
  }
  const base = Buffer.byteLength(rootfs);
  if (base + longest >= PATH_MAX) {
    throw new Img2vmError(
      'badImage',
      `the image's path "${showPath(at)}" is ${longest} bytes; under the build directory ${rootfs} it would be ${base + longest}, and Linux allows ${PATH_MAX - 1}`,
      'point TMPDIR at a directory with a shorter path, or use --builder docker',
    );
  }
}

/**
 * The image's files in the bundle's root: its layers flattened into the tree a conversion makes of them (the one
 * whiteout and path policy, and what the transport puts right afterwards), file contents spooled beside the root and
 * moved into it as the tree is made real there.
 */
async function unpack(img: SourceImage, rootfs: string, spoolDir: string, ctx: Env): Promise<void> {
  const warn = (m: string) => log(ctx, 'warn', m);
  const spool = new SpoolStore(spoolDir);
  try {
    const f = new LayerFlattener({
      store: spool,
      epoch: { sec: ctx.epoch, nsec: 0 },
      signal: ctx.signal,
      onWarning: warn,
    });
    for (const layer of img.layers) await f.applyLayer(await layer.open());
    const { tree } = f.finish();
    await img.afterFlatten?.(tree, { warnLost: false });
    checkBundlePaths(tree.root, rootfs);
    await materialise(tree, rootfs, spool, { signal: ctx.signal, onWarning: warn });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException | null)?.code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new Img2vmError(
        'outputNotWritable',
        `no space left while unpacking the image into ${rootfs}`,
        'free space there, or point TMPDIR at a larger file system',
        { cause: e },
      );
    }
    throw e;
  } finally {
    await rm(spoolDir, { recursive: true, force: true });
  }
}

/** Unpacks the image into a bundle, runs the steps, and writes the tree as one layer into the store's draft `tmp`. */
async function buildEntry(input: BuildInput, ctx: Env, tmp: string, p: Planned): Promise<void> {
  const recipe = input.recipe;
  const img = input.image;
  const bundle = await mkdtemp(join(ctx.work, 'runc-bundle-'));
  const dropBundle = ctx.scope.defer(`remove ${bundle}`, () => rm(bundle, { recursive: true, force: true }));
  try {
    const rootfs = join(bundle, 'rootfs');
    await mkdir(rootfs, { mode: 0o755 });
    let t = performance.now();
    const phase = (what: string) => {
      const now = performance.now();
      log(ctx, 'debug', `runc builder: ${what} in ${((now - t) / 1000).toFixed(1)} s`);
      t = now;
    };
    await unpack(img, rootfs, join(bundle, 'spool'), ctx);
    phase('unpacked the image into the bundle');
    const resolvConf = join(bundle, 'resolv.conf');
    const steps = p.rendered.steps;
    if (steps.some((s) => s.kind === 'run' && s.network)) await hostResolvConf(resolvConf);
    const bar = progress(ctx.sink, 'guest', 'entries', steps.length, 'build steps');
    const nonce = randomBytes(4).toString('hex');
    for (const [i, step] of steps.entries()) {
      ctx.signal.throwIfAborted();
      if (step.kind === 'copy') {
        const n = copyStep(rootfs, step, p.rendered.files);
        log(ctx, 'debug', `COPY ${step.src} ${step.dest}: ${n} files`);
      } else {
        log(ctx, 'debug', `RUN (line ${step.line}, network ${step.network ? 'host' : 'none'}) ${step.script}`);
        await runStep(input, ctx, bundle, step, containerId(process.pid, nonce, i), resolvConf);
      }
      bar.set(i + 1);
    }
    bar.end();
    phase(`ran ${steps.length} steps`);

    const layer = await writeTreeTar(rootfs, join(tmp, 'layer.tar'), {
      signal: ctx.signal,
      onWarning: (m) => log(ctx, 'warn', m),
    });
    phase(`wrote the layer (${layer.entries} entries, ${(layer.size / 1048576).toFixed(0)} MiB)`);
    const labels = { 'org.img2vm.base': img.id, 'org.img2vm.template': recipe.template, 'org.img2vm.key': p.key };
    const created = createdAt(ctx.epoch);
    const configBytes = Buffer.from(
      JSON.stringify(builtConfig(img.config, recipeEnv(p.rendered.dockerfile), layer.digest, labels, created)),
    );
    await writeFile(join(tmp, 'config.json'), configBytes);
    const record: BuildRecord = {
      format: 1,
      builder: 'runc',
      key: p.key,
      base: img.id,
      template: recipe.template,
      label: recipe.label,
      createdAt: created,
      layer: { digest: layer.digest, size: layer.size, entries: layer.entries },
      configDigest: sha256(configBytes),
    };
    await writeFile(join(tmp, 'build.json'), `${JSON.stringify(record, null, 2)}\n`);
  } finally {
    // The tree is in the layer now; the rootfs stage needs the room.
    await dropBundle();
  }
}

export const runcBuilder: Builder = {
  id: 'runc',
  async available() {
    if (!which('runc'))
      return {
        ok: false,
        why: 'the runc builder needs runc, which is not installed (install runc: apt-get install runc)',
      };
    if (process.getuid?.() !== 0)
      return {
        ok: false,
        why: 'the runc builder needs root, to give the built files their real owners (run img2vm as root)',
      };
    if (!which('getfattr'))
      return {
        ok: false,
        why: 'the runc builder needs getfattr, which is not installed (install attr: apt-get install attr)',
      };
    return { ok: true };
  },
  async lookup(input, env) {
    const p = await planRunc(input.image, input.recipe);
    const image = await new BuildCache(openStore()).use(p.key, env.scope, input.ref);
    return image ? { image, ref: p.ref } : undefined;
  },
  async build(input, ctx) {
    const p = await planRunc(input.image, input.recipe);
    // One process builds a key at a time; the others wait and then take its result.
    const onWait = (pid: number) =>
      log(ctx, 'info', `waiting for img2vm process ${pid}, which is building the same guest`);
    const { image, made } = await new BuildCache(openStore()).build(p.key, ctx, input.ref, onWait, async (dir) => {
      await sweepContainers();
      await buildEntry(input, ctx, dir, p);
    });
    return { image, cached: !made, ref: p.ref };
  },
};
