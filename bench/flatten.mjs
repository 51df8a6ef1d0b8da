// Benchmark: the runc builder's unpacking (layers flattened into the tree, then made real in a directory) against GNU tar extracting the same layers (the baseline), in one run.
// Usage (after the set-up): node bench/flatten.mjs [IMAGE]   — IMAGE in the local daemon, default img2vm-demo:bookworm
// Prints seconds for each, the ratio img2vm/tar (lower is better), and img2vm's peak RSS.
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LayerFlattener } from '../dist/rootfs/layers.js';
import { materialise } from '../dist/rootfs/materialise.js';
import { SpoolStore } from '../dist/rootfs/spool-store.js';

const image = process.argv[2] ?? 'img2vm-demo:bookworm';
const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-'));
try {
  execFileSync('sh', ['-c', `docker save ${image} | tar -x -C ${work}`]);
  const manifest = JSON.parse(readFileSync(join(work, 'manifest.json'), 'utf8'))[0];
  const layers = manifest.Layers.map((l) => join(work, l));
  const runs = 3;
  const tarTimes = [];
  const ourTimes = [];
  let peak = 0;
  for (let i = 0; i < runs; i++) {
    const a = join(work, `tar-${i}`);
    mkdirSync(a);
    execFileSync('sync');
    let t = performance.now();
    for (const l of layers) {
      // GNU tar does not resolve whiteouts; it is the floor for "write these bytes and inodes to disk".
      const r = spawnSync('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-xpf', l, '-C', a]);
      if (r.status !== 0) throw new Error(String(r.stderr));
    }
    tarTimes.push((performance.now() - t) / 1000);
    rmSync(a, { recursive: true, force: true });

    const b = join(work, `img2vm-${i}`);
    mkdirSync(b);
    execFileSync('sync');
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    t = performance.now();
    const spool = new SpoolStore(join(work, `spool-${i}`));
    const f = new LayerFlattener({ store: spool, epoch: { sec: 0, nsec: 0 } });
    for (const l of layers) await f.applyLayer(createReadStream(l));
    await materialise(f.finish().tree, b, spool);
    rmSync(spool.dir, { recursive: true, force: true });
    ourTimes.push((performance.now() - t) / 1000);
    clearInterval(sampler);
    rmSync(b, { recursive: true, force: true });
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const tarS = median(tarTimes);
  const ourS = median(ourTimes);
  console.log(`image ${image}: ${layers.length} layers`);
  console.log(`baseline GNU tar -x : ${tarS.toFixed(2)} s (median of ${runs})`);
  console.log(`img2vm flatten      : ${ourS.toFixed(2)} s (median of ${runs})`);
  console.log(`ratio img2vm/tar    : ${(ourS / tarS).toFixed(2)}`);
  console.log(`img2vm peak RSS     : ${(peak / 1048576).toFixed(0)} MiB`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
