// Benchmark: the tree flattener (LayerFlattener into a counting content store), and the runc builder's unpacking (the tree with
// contents spooled on disk, made real in a directory as root), in one run.
// Usage (after `npm run build`): node bench/layers.mjs [--image IMG] [--synthetic N] [--bigfile MiB] [--runs R] [--bundle-runs R] [--no-bundle]
//   --image IMG     flatten the layers of `docker save IMG` (IMG in the local daemon)
//   --synthetic N   a generated two-layer image with N files (default 100000; 0 to skip)
//   --bigfile MiB   a layer holding one sparse-ish file of that size (default 1024; 0 to skip)
// Each measurement runs in a fresh child process, so its peak RSS (VmHWM) is its own. Prints, per
// input: entries/s, MB/s of layer bytes, peak RSS, and for gzip layers how much of the gunzip time
// overlapped with the flattening (1 = fully hidden on another core, 0 = strictly added), and CPU
// seconds of the main thread and of the others (libuv's pool, where zlib inflates and files are read).
import { execFileSync, spawnSync } from 'node:child_process';
import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';

const self = fileURLToPath(import.meta.url);
const dist = new URL('../dist/rootfs/', import.meta.url);

// ---- child: one measurement ----

function hwmKiB() {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** CPU seconds of the main thread and of all other threads (libuv's pool inflates gzip there), from /proc. */
function threadCpu() {
  let main = 0;
  let other = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
    if (Number(tid) === process.pid) main += ticks;
    else other += ticks;
  }
  return { main: main / 100, other: other / 100 };
}

/** A content store that consumes every chunk and keeps nothing: the flattener's own cost, not a store's. */
class CountingStore {
  bytes = 0;
  live = 0;
  async put(chunks, size) {
    let n = 0;
    for await (const c of chunks) n += c.length;
    if (n !== size) throw new Error(`got ${n} bytes, ${size} declared`);
    this.bytes += n;
    this.live++;
    return { store: this };
  }
  putBuffer(data) {
    this.bytes += data.length;
    this.live++;
    return { store: this };
  }
  release() {
    this.live--;
  }
  // eslint-disable-next-line require-yield -- a generator that refuses before its first chunk
  async *read() {
    throw new Error('a counting store keeps no content');
  }
}

async function child(impl, files) {
  const { LayerFlattener } = await import(new URL('layers.js', dist));
  const { materialise } = await import(new URL('materialise.js', dist));
  const { SpoolStore } = await import(new URL('spool-store.js', dist));
  const { createGunzip } = await import('node:zlib');
  const out = { impl, bytesIn: files.reduce((a, f) => a + statSync(f).size, 0) };
  const th0 = threadCpu();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  if (impl === 'tree') {
    const store = new CountingStore();
    let last;
    const f = new LayerFlattener({
      store,
      epoch: { sec: 0, nsec: 0 },
      onProgress: (p) => (last = p),
      progressIntervalMs: 1e9,
    });
    for (const file of files) await f.applyLayer(createReadStream(file, { highWaterMark: 1 << 20 }));
    const { stats } = f.finish();
    Object.assign(out, { entries: last.entries, files: stats.files, bytesOut: store.bytes, live: store.live });
  } else if (impl === 'bundle') {
    // As root: the owners are set. What the runc builder does before its first step.
    const dir = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'bundle-'));
    try {
      const root = join(dir, 'rootfs');
      mkdirSync(root);
      const spool = new SpoolStore(join(dir, 'spool'));
      const f = new LayerFlattener({ store: spool, epoch: { sec: 0, nsec: 0 } });
      for (const file of files) await f.applyLayer(createReadStream(file, { highWaterMark: 1 << 20 }));
      const { tree, stats } = f.finish();
      await materialise(tree, root, spool);
      Object.assign(out, { files: stats.files, bytesOut: stats.bytes });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } else if (impl === 'gunzip') {
    // The decompression alone, consumed as fast as it comes: the floor for a gzip layer.
    let n = 0;
    for (const file of files)
      for await (const c of createReadStream(file, { highWaterMark: 1 << 20 }).pipe(
        createGunzip({ chunkSize: 1 << 16 }),
      ))
        n += c.length;
    out.bytesOut = n;
  }
  out.ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  out.cpuMs = (c.user + c.system) / 1000;
  const th1 = threadCpu();
  out.threads = { main: th1.main - th0.main, other: th1.other - th0.other };
  out.hwmKiB = hwmKiB();
  process.stdout.write(JSON.stringify(out));
}

// ---- parent: inputs and runs ----

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

function measure(impl, files, runs) {
  const results = [];
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(process.execPath, [self, '--child', impl, ...files], {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
      env: { ...process.env },
    });
    if (r.status !== 0) throw new Error(`${impl} failed: ${r.stderr}`);
    results.push(JSON.parse(r.stdout));
  }
  results.sort((a, b) => a.ms - b.ms);
  return { best: results[0], median: results[Math.floor(results.length / 2)] };
}

/** Deterministic pseudo-random bytes (xorshift), so inputs are the same in every run. */
function prng(seed) {
  let x = seed >>> 0 || 1;
  return (n) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b[i] = x & 0xff;
    }
    return b;
  };
}

function header(name, size, type = '0', mode = 0o644) {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'latin1');
  b.write(`${mode.toString(8).padStart(7, '0')}\0`, 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write('14000000000\0', 136, 'latin1');
  b.write(type, 156, 'latin1');
  b.write('ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i];
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

const pad = (n) => Buffer.alloc((512 - (n % 512)) % 512);

async function writeLayer(file, gen) {
  await pipeline(Readable.from(gen()), createWriteStream(file));
}

async function gzipFile(src, dst) {
  await pipeline(createReadStream(src), createGzip({ level: 6 }), createWriteStream(dst));
}

/** N files in N/100 directories, text-like content of 0-16 KiB; a second layer overwrites, whites out and adds. */
async function synthetic(dir, n) {
  const rnd = prng(42);
  const words = rnd(64 * 1024)
    .toString('base64')
    .replace(/[+/=]/g, ' ');
  const body = (i) => {
    const size = (i * 2654435761) % 16384;
    return Buffer.from(words.slice(i % 40000, (i % 40000) + size).padEnd(size, 'x'));
  };
  await writeLayer(join(dir, 'l1.tar'), function* () {
    for (let d = 0; d < n / 100; d++) {
      yield header(`usr/share/d${d}/`, 0, '5', 0o755);
      for (let i = 0; i < 100; i++) {
        const b = body(d * 100 + i);
        yield header(`usr/share/d${d}/file-${i}.txt`, b.length);
        yield b;
        yield pad(b.length);
      }
    }
    yield Buffer.alloc(1024);
  });
  await writeLayer(join(dir, 'l2.tar'), function* () {
    for (let d = 0; d < n / 100; d += 10) {
      yield header(`usr/share/d${d}/file-0.txt`, 5);
      yield Buffer.from('again');
      yield pad(5);
      yield header(`usr/share/d${d + 1}/.wh.file-1.txt`, 0);
      yield header(`usr/share/d${d + 2}/.wh..wh..opq`, 0);
    }
    yield Buffer.alloc(1024);
  });
  return ['l1.tar', 'l2.tar'];
}

/** One file of mib MiB: in each MiB, 4 KiB of random bytes and zeros after them. */
async function bigfile(dir, mib) {
  const rnd = prng(7);
  const size = mib * 1024 * 1024;
  await writeLayer(join(dir, 'big.tar'), function* () {
    yield header('var/lib/big.img', size);
    const zeros = Buffer.alloc(1024 * 1024 - 4096);
    for (let i = 0; i < mib; i++) {
      yield rnd(4096);
      yield zeros;
    }
    yield Buffer.alloc(1024);
  });
  return ['big.tar'];
}

async function dockerImage(dir, image) {
  execFileSync('sh', ['-c', `docker save "$1" | tar -x -C "$2"`, 'sh', image, dir]);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))[0];
  return manifest.Layers;
}

/** tarBytes: the uncompressed layer bytes, so MB/s compares across compressions. */
function report(title, files, results, tarBytes, entries) {
  const mb = (b) => (b / 1e6).toFixed(0);
  const tree = results.tree.median;
  console.log(
    `\n${title}: ${files.length} layers, ${mb(tree.bytesIn)} MB of blobs, ${mb(tarBytes)} MB of tar, ${entries} entries, ${tree.files} files in the result`,
  );
  for (const [impl, { best, median }] of Object.entries(results)) {
    const s = median.ms / 1000;
    console.log(
      `  ${impl.padEnd(10)} ${s.toFixed(2)} s median (best ${(best.ms / 1000).toFixed(2)}), ${Math.round(entries / s)} entries/s, ${(tarBytes / 1e6 / s).toFixed(0)} MB/s of tar, ` +
        `CPU ${(median.cpuMs / 1000).toFixed(2)} s (main thread ${median.threads.main.toFixed(2)}, others ${median.threads.other.toFixed(2)}), peak RSS ${(median.hwmKiB / 1024).toFixed(0)} MiB`,
    );
  }
}

async function main() {
  const runs = Number(arg('--runs', '3'));
  const image = arg('--image', undefined);
  const n = Number(arg('--synthetic', '100000'));
  const mib = Number(arg('--bigfile', '1024'));
  const bundle = !process.argv.includes('--no-bundle');
  const bundleRuns = Number(arg('--bundle-runs', '1'));
  const work = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'img2vm-bench-layers-'));
  try {
    const idle = measure('idle', [], 1).best;
    console.log(
      `node ${process.version}, ${runs} runs each (median), idle child RSS ${(idle.hwmKiB / 1024).toFixed(0)} MiB`,
    );
    const inputs = [];
    if (image) inputs.push([`docker save ${image}`, 'image', (d) => dockerImage(d, image)]);
    if (n > 0) inputs.push([`synthetic ${n} files`, 'synthetic', (d) => synthetic(d, n)]);
    if (mib > 0) inputs.push([`one ${mib} MiB sparse-ish file`, 'bigfile', (d) => bigfile(d, mib)]);
    for (const [title, name, make] of inputs) {
      const dir = join(work, name);
      mkdirSync(dir);
      const plain = (await make(dir)).map((l) => join(dir, l));
      const gz = [];
      for (const f of plain) {
        await gzipFile(f, `${f}.gz`);
        gz.push(`${f}.gz`);
      }
      const results = { tree: measure('tree', plain, runs) };
      if (bundle) results.bundle = measure('bundle', plain, bundleRuns);
      const gzResults = { tree: measure('tree', gz, runs), gunzip: measure('gunzip', gz, runs) };
      if (bundle) gzResults.bundle = measure('bundle', gz, bundleRuns);
      const tarBytes = results.tree.median.bytesIn;
      const entries = results.tree.median.entries;
      report(`${title}, uncompressed`, plain, results, tarBytes, entries);
      report(`${title}, gzip -6`, gz, gzResults, tarBytes, entries);
      const tPlain = results.tree.median.ms;
      const tGunzip = gzResults.gunzip.median.ms;
      const tGz = gzResults.tree.median.ms;
      const overlap = (tPlain + tGunzip - tGz) / Math.min(tPlain, tGunzip);
      console.log(
        `  overlap: flatten ${(tPlain / 1000).toFixed(2)} s + gunzip ${(tGunzip / 1000).toFixed(2)} s = ${((tPlain + tGunzip) / 1000).toFixed(2)} s serial; ` +
          `gzip flatten took ${(tGz / 1000).toFixed(2)} s → overlap ${overlap.toFixed(2)}`,
      );
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  if (process.argv[3] === 'idle') {
    process.stdout.write(
      JSON.stringify({ impl: 'idle', ms: 0, cpuMs: 0, threads: { main: 0, other: 0 }, hwmKiB: hwmKiB(), bytesIn: 0 }),
    );
  } else await child(process.argv[3], process.argv.slice(4));
} else await main();
