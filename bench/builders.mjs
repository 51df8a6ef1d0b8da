// Benchmark: the daemonless guest builders on the Debian template, cold and cached, in one run: img2vm's runc builder (its Dockerfile-subset interpreter + runc), buildah, and the podman builder.
// Usage (as root, after the set-up): node bench/builders.mjs [--rounds N] [--builders runc,buildah,podman] [--image IMG]
// Each builder starts from the same oci-archive of IMG (default img2vm-demo:bookworm), with a cache and a storage of
// its own; a round is a cold build of each, then a cached one of each. A build ends with an image img2vm can read
// (the runc builder's cached layer; buildah's and podman's exported as an oci-archive and opened). Prints per build:
// seconds, peak RSS of the largest process (GNU time) and of img2vm's own node process, and disk in use at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const dist = new URL('../dist/', import.meta.url).pathname;
const BASE = 'localhost/img2vm-bench-base:bookworm';
const BUILT = 'localhost/img2vm-bench-built:latest';

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

async function env(work) {
  const { Scope } = await import(join(dist, 'core/scope.js'));
  const { createRandom } = await import(join(dist, 'core/random.js'));
  const now = Math.floor(Date.now() / 1000);
  return {
    work,
    signal: new AbortController().signal,
    sink: () => {},
    scope: new Scope(),
    random: createRandom('bench'),
    epoch: now,
    fixedEpoch: 0,
  };
}

/** The recipe a conversion with default options builds for the image. */
async function recipeOf(img) {
  const { detectOs } = await import(join(dist, 'guest/detect.js'));
  const { recipeFor } = await import(join(dist, 'guest/distros.js'));
  const { recipeWithFeatures } = await import(join(dist, 'guest/distro-config.js'));
  const settings = {
    password: false,
    sshKey: null,
    user: null,
    dns: null,
    cloudInit: false,
    entrypointService: false,
    systemdBoot: false,
  };
  return recipeWithFeatures(recipeFor(await detectOs(img), 'amd64'), settings);
}

function hwmKiB() {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
}

/** Runs a program under GNU time, returning its max RSS (KiB) and seconds. */
function timed(argv, opts = {}) {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'TIME %M', ...argv], { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  const m = /TIME (\d+)\s*$/.exec(r.stderr ?? '');
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${(r.stderr ?? '').slice(-2000)}`);
  return { s: (performance.now() - t0) / 1000, maxKiB: m ? Number(m[1]) : 0, stdout: r.stdout };
}

// ---- child: one build ----

async function child(builder, phase, dir) {
  const { openSource } = await import(join(dist, 'source/index.js'));
  const e = await env(join(dir, 'work'));
  mkdirSync(e.work, { recursive: true });
  const out = { builder, phase, steps: {} };
  const t0 = performance.now();
  const img = await openSource(`oci-archive:${join(dir, '..', 'base.tar')}:bookworm`, e);
  const recipe = await recipeOf(img);
  out.steps.open = (performance.now() - t0) / 1000;
  if (builder === 'runc' || builder === 'podman') {
    // The runc builder says how long each of its phases took.
    e.sink = (ev) => {
      const m = ev.type === 'log' && /^runc builder: (.+) in ([\d.]+) s$/.exec(ev.message);
      if (m)
        out.steps[
          m[1]
            .split(' ')[0]
            .replace(/^unpacked$/, 'unpack')
            .replace(/^ran$/, 'steps')
            .replace(/^wrote$/, 'layer')
        ] = Number(m[2]);
    };
    const { BUILDERS } = await import(join(dist, 'build/index.js'));
    const r = await BUILDERS[builder].build({ image: img, recipe, ref: 'bench' }, e);
    out.cached = r.cached;
    out.layers = r.image.layers.length;
  } else {
    // buildah as a builder would run it: the base pulled into its storage, the rendered template built with the host
    // network and no registry, the result exported uncompressed as an oci-archive and opened.
    const { renderRecipe } = await import(join(dist, 'build/recipe.js'));
    const rendered = await renderRecipe(recipe, { base: BASE, ...recipe.values });
    const ctxDir = join(e.work, 'ctx');
    mkdirSync(ctxDir, { recursive: true });
    writeFileSync(join(ctxDir, 'Dockerfile'), rendered.dockerfile);
    for (const f of rendered.files) {
      mkdirSync(dirname(join(ctxDir, f.path)), { recursive: true });
      writeFileSync(join(ctxDir, f.path), f.content, { mode: f.mode });
    }
    const exists = spawnSync('buildah', ['images', '--quiet', BUILT], { encoding: 'utf8' }).status === 0;
    out.cached = exists;
    out.buildahMaxKiB = 0;
    const step = (name, argv) => {
      const r = timed(argv, { env: { ...process.env, TMPDIR: e.work } });
      out.steps[name] = r.s;
      out.buildahMaxKiB = Math.max(out.buildahMaxKiB, r.maxKiB);
      return r.stdout.trim();
    };
    if (!exists) {
      const id = step('pull', ['buildah', 'pull', '--quiet', `oci-archive:${join(dir, '..', 'base.tar')}:bookworm`])
        .split('\n')
        .pop();
      step('tag', ['buildah', 'tag', id, BASE]);
      step('bud', [
        'buildah',
        'bud',
        '--network',
        'host',
        '--pull=never',
        '--layers=false',
        '--format',
        'oci',
        '--file',
        join(ctxDir, 'Dockerfile'),
        '--tag',
        BUILT,
        ctxDir,
      ]);
    }
    const archive = join(e.work, 'built.tar');
    step('push', ['buildah', 'push', '--quiet', '--disable-compression', BUILT, `oci-archive:${archive}:built`]);
    const t = performance.now();
    const built = await openSource(`oci-archive:${archive}:built`, e);
    rmSync(archive, { force: true });
    out.steps.read = (performance.now() - t) / 1000;
    out.layers = built.layers.length;
  }
  out.s = (performance.now() - t0) / 1000;
  await e.scope.close();
  rmSync(e.work, { recursive: true, force: true });
  out.nodeHwmKiB = hwmKiB();
  process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
}

// ---- parent ----

function du(paths) {
  // -x: not into the overlay mounts of containers/storage (their files are counted where they are stored).
  const r = spawnSync('du', ['-sbcx', ...paths], { encoding: 'utf8' });
  const total = /(\d+)\s+total\s*$/.exec(r.stdout ?? '');
  return total ? Number(total[1]) : 0;
}

/** Runs a program under GNU time while sample() is called every 2 s; its largest answer is the peak. */
async function timedSampling(argv, envVars, sample) {
  const { spawn } = await import('node:child_process');
  const t0 = performance.now();
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, sample())), 2000);
  const child = spawn('/usr/bin/time', ['-f', 'TIME %M', ...argv], { env: envVars, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-100000)));
  const code = await new Promise((res) => child.on('close', res));
  clearInterval(timer);
  peak = Math.max(peak, sample());
  if (code !== 0) throw new Error(`${argv.join(' ')} failed (${code}): ${stderr.slice(-3000)}`);
  const m = /TIME (\d+)\s*$/.exec(stderr);
  return { s: (performance.now() - t0) / 1000, maxKiB: m ? Number(m[1]) : 0, peak, stdout, stderr };
}

function storageEnv(dir) {
  const conf = join(dir, 'storage.conf');
  writeFileSync(
    conf,
    `[storage]\ndriver = "overlay"\ngraphroot = "${join(dir, 'graph')}"\nrunroot = "${join(dir, 'run')}"\n`,
  );
  return { CONTAINERS_STORAGE_CONF: conf };
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root: the builders need it');
  const rounds = Number(arg('--rounds', '1'));
  const builders = arg('--builders', 'runc,buildah,podman').split(',');
  const image = arg('--image', 'img2vm-demo:bookworm');
  const top = mkdtempSync(join(process.env.BENCH_TMP ?? '/var/tmp', 'img2vm-bench-builders-'));
  const results = [];
  try {
    const { openSource } = await import(join(dist, 'source/index.js'));
    const { writeOciArchive } = await import(join(dist, 'build/oci-archive-out.js'));
    const e = await env(top);
    await writeOciArchive(
      await openSource(`docker-daemon:${image}`, e),
      join(top, 'base.tar'),
      'bookworm',
      top,
      e.signal,
    );
    await e.scope.close();
    for (let round = 1; round <= rounds; round++) {
      const dirs = {};
      for (const b of builders) {
        dirs[b] = join(top, `${b}-${round}`);
        mkdirSync(dirs[b]);
      }
      const childEnv = (b) => ({
        ...process.env,
        XDG_CACHE_HOME: join(dirs[b], 'xdg'),
        TMPDIR: join(dirs[b], 'work'),
        ...(b === 'runc' ? {} : storageEnv(dirs[b])),
      });
      for (const phase of ['cold', 'cached']) {
        for (const b of builders) {
          execFileSync('sync');
          const r = await timedSampling([process.execPath, self, '--child', b, phase, dirs[b]], childEnv(b), () =>
            du([dirs[b]]),
          );
          const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
          if (!line) throw new Error(`${b} ${phase}: ${r.stderr.slice(-3000)}`);
          const res = {
            ...JSON.parse(line.slice(7)),
            round,
            wall: r.s,
            treeMaxKiB: r.maxKiB,
            diskPeak: r.peak,
            diskAfter: du([dirs[b]]),
          };
          results.push(res);
          console.log(JSON.stringify(res));
        }
      }
      for (const b of builders) {
        if (b !== 'runc') spawnSync(b, ['rmi', '--all', '--force'], { env: childEnv(b) });
        // containers/storage keeps its overlay directory mounted on itself.
        spawnSync('sh', ['-c', `grep -o " ${dirs[b]}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount`]);
      }
    }
    console.log(
      '\nbuilder  phase   seconds  builder-steps                        peak RSS (largest process / node)  disk peak / after',
    );
    for (const r of results) {
      const steps = Object.entries(r.steps)
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ');
      console.log(
        `${r.builder.padEnd(8)} ${r.phase.padEnd(7)} ${r.wall.toFixed(1).padStart(7)}  ${steps.padEnd(36)} ${(r.treeMaxKiB / 1024).toFixed(0).padStart(5)} MiB / ${(r.nodeHwmKiB / 1024).toFixed(0)} MiB${r.buildahMaxKiB ? ` (buildah ${(r.buildahMaxKiB / 1024).toFixed(0)} MiB)` : ''}  ${(r.diskPeak / 1048576).toFixed(0)} / ${(r.diskAfter / 1048576).toFixed(0)} MiB`,
      );
    }
  } finally {
    spawnSync('sh', ['-c', `grep -o " ${top}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount`]);
    rmSync(top, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') await child(process.argv[3], process.argv[4], process.argv[5]);
else await main();
