// Benchmark: OS detection (the layers flattened into a tree that keeps only os-release) against reading the same layers through the tar reader alone (the floor), in one run.
// Usage (after the set-up): node bench/detect.mjs [REF ...]   default: the demo image from the daemon, and the same image as an oci-archive
// Each measurement runs in a fresh child process (its peak RSS is its own); prints the median of 3 and the ratio detect/floor.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const dist = process.env.IMG2VM_DIST ?? new URL('../dist/', import.meta.url).pathname;
const DEMO = 'img2vm-demo:bookworm';

async function context(work) {
  const { Scope } = await import(join(dist, 'core/scope.js'));
  const { createRandom } = await import(join(dist, 'core/random.js'));
  return {
    work,
    signal: new AbortController().signal,
    sink: () => {},
    scope: new Scope(),
    random: createRandom('bench'),
  };
}

async function child(what, ref, work) {
  const { openSource } = await import(join(dist, 'source/index.js'));
  const ctx = await context(work);
  const t0 = performance.now();
  const img = await openSource(ref, ctx);
  const opened = performance.now();
  let result;
  if (what === 'detect') {
    const { detectOs } = await import(join(dist, 'guest/detect.js'));
    result = (await detectOs(img))?.prettyName ?? null;
  } else {
    // The floor: every layer decompressed and every entry's header and data read, nothing kept.
    const { openLayer } = await import(join(dist, 'rootfs/decompress.js'));
    const { ByteSource, TarReader } = await import(join(dist, 'rootfs/tar.js'));
    let entries = 0;
    for (const layer of img.layers) {
      const l = await openLayer(await layer.open());
      const tar = new TarReader(new ByteSource(l.chunks));
      for (let h = await tar.next(); h; h = await tar.next()) entries++;
      await l.dispose();
    }
    result = entries;
  }
  const done = performance.now();
  await ctx.scope.close();
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
  process.stdout.write(JSON.stringify({ open: opened - t0, ms: done - opened, hwmKiB: hwm, result }));
}

function measure(what, ref, work, runs = 3) {
  const out = [];
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(process.execPath, [self, '--child', what, ref, work], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`${what} ${ref}: ${r.stderr}`);
    out.push(JSON.parse(r.stdout));
  }
  out.sort((a, b) => a.ms - b.ms);
  return out[Math.floor(out.length / 2)];
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-detect-'));
  try {
    let refs = process.argv.slice(2);
    if (refs.length === 0) {
      const { openSource } = await import(join(dist, 'source/index.js'));
      const { writeOciArchive } = await import(join(dist, 'build/oci-archive-out.js'));
      const ctx = await context(work);
      const archive = join(work, 'demo-oci.tar');
      await writeOciArchive(await openSource(`docker-daemon:${DEMO}`, ctx), archive, 'bench', work, ctx.signal);
      await ctx.scope.close();
      refs = [`docker-daemon:${DEMO}`, `oci-archive:${archive}:bench`];
    }
    for (const ref of refs) {
      const d = measure('detect', ref, work);
      const f = measure('floor', ref, work);
      console.log(`${ref}`);
      console.log(
        `  detect: ${d.ms.toFixed(0)} ms (opening the source: ${d.open.toFixed(0)} ms more), peak RSS ${(d.hwmKiB / 1024).toFixed(0)} MiB → ${d.result}`,
      );
      console.log(
        `  floor : ${f.ms.toFixed(0)} ms, peak RSS ${(f.hwmKiB / 1024).toFixed(0)} MiB, ${f.result} tar entries`,
      );
      console.log(`  ratio detect/floor: ${(d.ms / f.ms).toFixed(2)}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') await child(process.argv[3], process.argv[4], process.argv[5]);
else await main();
