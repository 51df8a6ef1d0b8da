// Benchmark: memory per entry of the flattened tree (and of the ext4 writer that holds the same files), for layers of many empty files.
// Usage (after `npm run build`): node bench/entries.mjs [--entries N[,N...]] [--per-dir D] [--shape empty|mix] [--mode tree|ext4|both|cli] [--gzip] [--base DIST]
//   --entries   how many empty regular files the one generated layer holds (default 100000,990000: just under MAX_ENTRIES with the directories)
//   --per-dir   files per directory (default 1000), so a layer of N files has N/D directories too
//   --shape     empty (default): N empty files, --per-dir to a directory; small: the same with 100 bytes in
//               each file; mix: N entries in all, in directories
//               of 1 to 200,000 entries, with subdirectories, 10% symlinks (a quarter of them too long for the
//               inode), 10% hard links and 10% files of 100 bytes, the rest empty files
//   --base      another build's dist/ directory (e.g. main's, built in a checkout with its node_modules): each
//               ext4 and cli measurement runs with it too, in the same run, and the ratios are printed
// Environment: BENCH_HASH=1 prints the image's sha256 (ext4 mode; with --base, whether both builds wrote the
// same bytes), BENCH_FSCK=1 checks the image with e2fsck -fn.
//   --mode      tree: flatten into a store that keeps nothing (the tree's own cost);
//               ext4: flatten into img2vm's ext4 writer on a sparse file in BENCH_TMP, then write the
//               file system (what a conversion holds); both (default: tree and ext4);
//               cli: a whole conversion, `bin/img2vm oci-archive:FILE -o disk.raw --init img2vm` of a
//               generated OCI archive with the layer gzip'ed, under /usr/bin/time (needs img2vm's
//               kernel in its cache or the Debian archive reachable)
//   --gzip      compress the generated layer (gzip -1) as it streams, as a registry layer would be
// Each measurement runs in its own child process (with --expose-gc), so its peak RSS (VmHWM) is its
// own; an idle child is measured in the same run and subtracted. Prints, per N and mode: bytes of
// JS heap per entry after a full GC while the tree is alive, peak RSS per entry above the idle
// child, and the time taken. In ext4 mode the peak is also taken per phase (the high-water mark is
// reset between them through /proc/self/clear_refs): flattening into the writer, measure() (what
// the conversion's configure step asks of the writer) and finish(). A refused layer (a limit) is
// printed with the message.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';

const self = fileURLToPath(import.meta.url);
const dist = process.env.BENCH_DIST
  ? new URL(`file://${process.env.BENCH_DIST.replace(/\/?$/, '/')}`)
  : new URL('../dist/', import.meta.url);

function hwmKiB() {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Starts a new peak: the high-water mark becomes the current RSS. */
function resetHwm() {
  writeFileSync('/proc/self/clear_refs', '5');
}

/** A store that consumes every chunk and keeps nothing: what is left is the tree's own cost. */
class NullStore {
  async put(chunks) {
    for await (const _ of chunks);
    return { store: this };
  }
  putBuffer() {
    return { store: this };
  }
  release() {}
  async *read() {}
}

/** Writes one ustar header into b at off; names and link targets up to 100 bytes (the generator keeps them short). */
function header(b, off, name, size, type, mode, link = '') {
  b.fill(0, off, off + 512);
  b.write(name, off, 100, 'latin1');
  if (link) b.write(link, off + 157, 100, 'latin1');
  b.write(`${mode.toString(8).padStart(7, '0')}\0`, off + 100, 'latin1');
  b.write('0000000\0', off + 108, 'latin1');
  b.write('0000000\0', off + 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, off + 124, 'latin1');
  b.write('14000000000\0', off + 136, 'latin1');
  b.write(type, off + 156, 'latin1');
  b.write('ustar\x0000', off + 257, 'latin1');
  b.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + 512; i++) sum += b[i];
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, off + 148, 'latin1');
}

/**
 * The layer as a stream, generated as it is read: n empty files, perDir to a directory. Headers are
 * written into 1 MiB chunks (as a decompressor hands them out), so the generator itself makes no
 * garbage per entry that would count against the flattener.
 */
function layer(n, perDir, shape = 'empty') {
  const CHUNK = 1 << 20;
  function* gen() {
    let b = Buffer.alloc(CHUNK);
    let off = 0;
    const room = () => {
      if (off + 512 <= CHUNK) return;
      const full = b;
      b = Buffer.alloc(CHUNK);
      off = 0;
      return full;
    };
    if (shape !== 'empty') {
      for (const [name, size, type, mode, link] of shape === 'mix' ? mixEntries(n) : smallEntries(n, perDir)) {
        const full = room();
        if (full) yield full;
        header(b, off, name, size, type, mode, link);
        off += 512;
        if (size > 0) {
          const f2 = room();
          if (f2) yield f2;
          b.fill(0x61, off, off + size);
          b.fill(0, off + size, off + 512);
          off += 512;
        }
      }
      yield b.subarray(0, off);
      yield Buffer.alloc(1024);
      return;
    }
    for (let i = 0; i < n; i++) {
      const d = Math.floor(i / perDir);
      for (const [name, type, mode] of i % perDir === 0
        ? [
            [`usr/share/pkg-${d}/`, '5', 0o755],
            [`usr/share/pkg-${d}/file-${i}.txt`, '0', 0o644],
          ]
        : [[`usr/share/pkg-${d}/file-${i}.txt`, '0', 0o644]]) {
        const full = room();
        if (full) yield full;
        header(b, off, name, 0, type, mode);
        off += 512;
      }
    }
    // Two zero blocks end the archive.
    yield b.subarray(0, off);
    yield Buffer.alloc(1024);
  }
  return Readable.from(gen(), { objectMode: false });
}

/** n files of 100 bytes, perDir to a directory: each holds a data block and an extent, where an empty file holds none. */
function* smallEntries(n, perDir) {
  for (let i = 0; i < n; i++) {
    const d = Math.floor(i / perDir);
    if (i % perDir === 0) yield [`usr/share/pkg-${d}/`, 0, '5', 0o755];
    yield [`usr/share/pkg-${d}/file-${i}.txt`, 100, '0', 0o644];
  }
}

/**
 * The mix: n names in directories of 1 to 200,000 entries (sizes cycling), every 97th entry of a
 * directory of 64 or more a subdirectory of 3 files; of the rest a tenth symlinks (every fourth
 * target 90 bytes, past what the inode holds), a tenth hard links to a file two entries before, a
 * tenth files of 100 bytes, the others empty files. Yields [name, size, type, mode, link].
 */
function* mixEntries(n) {
  const SIZES = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 200000];
  const long = `../../${'x'.repeat(84)}`;
  let left = n;
  for (let k = 0; left > 0; k++) {
    const size = SIZES[k % SIZES.length];
    const d = `m/s${size}-${k}`;
    yield [`${d}/`, 0, '5', 0o755];
    left--;
    for (let j = 0; j < size && left > 0; j++) {
      if (size >= 64 && j % 97 === 3 && left >= 4) {
        yield [`${d}/sub${j}/`, 0, '5', 0o755];
        for (let q = 0; q < 3; q++) yield [`${d}/sub${j}/g${q}`, 0, '0', 0o644];
        left -= 4;
        continue;
      }
      left--;
      const r = j % 10;
      if (r === 7) yield [`${d}/l${j}`, 0, '2', 0o777, j % 40 === 7 ? long : `f${j - 1}`];
      else if (r === 8) yield [`${d}/h${j}`, 0, '1', 0o644, `${d}/f${j - 2}`];
      else if (r === 5) yield [`${d}/f${j}`, 100, '0', 0o644];
      else yield [`${d}/f${j}`, 0, '0', 0o644];
    }
  }
}

async function child(mode, n, perDir, gzip, shape) {
  const out = { mode, n };
  if (mode === 'idle') {
    out.hwmKiB = hwmKiB();
    return out;
  }
  const { LayerFlattener } = await import(new URL('rootfs/layers.js', dist));
  const t0 = performance.now();
  let src = layer(n, perDir, shape);
  if (gzip) src = src.pipe(createGzip({ level: 1 }));
  let w;
  let target;
  let file;
  if (mode === 'ext4') {
    const { Ext4Writer } = await import(new URL('disk/ext4/index.js', dist));
    const { RawFileTarget } = await import(new URL('disk/target.js', dist));
    file = join(process.env.BENCH_DIR, `fs-${n}.img`);
    target = new RawFileTarget(file);
    w = new Ext4Writer({
      target,
      offset: 0,
      uuid: '01234567-89ab-4def-8123-456789abcdef',
      label: 'root',
      hashSeed: '11111111-2222-4333-8444-555555555555',
      epoch: 1_700_000_000,
    });
  }
  const store = w ?? new NullStore();
  try {
    const f = new LayerFlattener({ store, epoch: { sec: 1_700_000_000, nsec: 0 } });
    await f.applyLayer(src);
    const { tree, stats } = f.finish();
    out.flattenMs = performance.now() - t0;
    globalThis.gc();
    const mu = process.memoryUsage();
    out.heapUsed = mu.heapUsed;
    out.external = mu.external + mu.arrayBuffers;
    out.rssAfterFlatten = mu.rss;
    out.entries = tree.entries;
    out.hwmFlatten = hwmKiB();
    if (w) {
      const { inodesFor, defaultFsSize } = await import(new URL('disk/sizing.js', dist));
      const content = { blocks4k: stats.blocks4k + 4096, entries: out.entries + 1000 };
      const inodeCount = inodesFor(content);
      resetHwm();
      const t1 = performance.now();
      const minimum = w.measure(tree.root).minimumBytes(inodeCount);
      out.measureMs = performance.now() - t1;
      out.hwmMeasure = hwmKiB();
      resetHwm();
      const sizeBytes = Math.max(defaultFsSize(content), minimum);
      const t2 = performance.now();
      const summary = await w.finish(tree.root, { sizeBytes, inodeCount });
      out.finishMs = performance.now() - t2;
      out.hwmFinish = hwmKiB();
      out.fsBytes = summary.sizeBytes;
      out.inodes = summary.inodes;
      if (process.env.BENCH_HASH || process.env.BENCH_FSCK) {
        target.close();
        target = undefined;
        if (process.env.BENCH_HASH) out.sha = spawnSync('sha256sum', [file], { encoding: 'utf8' }).stdout.split(' ')[0];
        if (process.env.BENCH_FSCK) {
          const r = spawnSync('e2fsck', ['-fn', file], { encoding: 'utf8' });
          if (r.status !== 0) throw new Error(`e2fsck -fn found problems:\n${r.stdout.slice(0, 2000)}`);
        }
      }
    }
  } catch (e) {
    out.refused = `${e.message}${e.hint ? ` (${e.hint})` : ''}`;
  } finally {
    target?.close();
    if (file) rmSync(file, { force: true });
  }
  out.ms = performance.now() - t0;
  out.hwmKiB = Math.max(hwmKiB(), out.hwmFlatten ?? 0, out.hwmMeasure ?? 0, out.hwmFinish ?? 0);
  return out;
}

/** An OCI archive holding one gzip layer of n empty files; its layer digests computed as it streams. */
async function ociArchive(dir, n, perDir, shape) {
  const layout = join(dir, `layout-${n}`);
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const diff = createHash('sha256');
  const gzHash = createHash('sha256');
  const tmp = join(layout, 'layer.tmp');
  const tap = (h) =>
    new Transform({
      transform(c, _e, cb) {
        h.update(c);
        cb(null, c);
      },
    });
  await pipeline(layer(n, perDir, shape), tap(diff), createGzip({ level: 1 }), tap(gzHash), createWriteStream(tmp));
  const blob = (bytes) => {
    const d = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(layout, 'blobs', 'sha256', d), bytes);
    return { digest: `sha256:${d}`, size: bytes.length };
  };
  const gzDigest = gzHash.digest('hex');
  const gzSize = statSync(tmp).size;
  rmSync(join(layout, 'blobs', 'sha256', gzDigest), { force: true });
  spawnSync('mv', [tmp, join(layout, 'blobs', 'sha256', gzDigest)]);
  const config = blob(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: [`sha256:${diff.digest('hex')}`] },
      }),
    ),
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${gzDigest}`, size: gzSize }],
  };
  const md = blob(Buffer.from(JSON.stringify(manifest)));
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        { mediaType: manifest.mediaType, ...md, annotations: { 'org.opencontainers.image.ref.name': 'latest' } },
      ],
    }),
  );
  const archive = join(dir, `entries-${n}.tar`);
  spawnSync('tar', ['-C', layout, '-cf', archive, '.']);
  rmSync(layout, { recursive: true, force: true });
  return archive;
}

/** A whole conversion under GNU time: peak RSS of the largest process, seconds, the disk's apparent size, or why it was refused. */
async function cli(n, perDir, dir, shape, distDir) {
  const archive = await ociArchive(dir, n, perDir, shape);
  const out = join(dir, `disk-${n}.raw`);
  const bin = distDir ? join(distDir, '..', 'bin', 'img2vm') : fileURLToPath(new URL('../bin/img2vm', import.meta.url));
  const t0 = performance.now();
  const r = spawnSync(
    '/usr/bin/time',
    ['-f', 'RSS %M', bin, `oci-archive:${archive}`, '-o', out, '--init', 'img2vm', '--boot', 'bios', '--json'],
    { encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  const s = (performance.now() - t0) / 1000;
  const rss = Number(/RSS (\d+)/.exec(r.stderr)?.[1] ?? 0) * 1024;
  let size;
  try {
    size = statSync(out).size;
  } catch {
    // no output file: the run refused the input, reported below
  }
  let refused;
  if (r.status !== 0) {
    try {
      const j = JSON.parse(r.stdout);
      refused = `exit ${r.status}: ${j.error?.message ?? r.stdout.slice(0, 300)}`;
    } catch {
      refused = `exit ${r.status}: ${(r.stderr || r.stdout).slice(-400)}`;
    }
  }
  rmSync(archive, { force: true });
  rmSync(out, { force: true });
  return { s, rss, size, refused };
}

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

function run(mode, n, perDir, gzip, dir, shape, distDir) {
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', self, '--child', mode, String(n), String(perDir), gzip ? '1' : '0', shape],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
      env: { ...process.env, BENCH_DIR: dir, ...(distDir ? { BENCH_DIST: distDir } : {}) },
    },
  );
  if (r.status !== 0) throw new Error(`${mode} ${n} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function main() {
  const ns = arg('--entries', '100000,990000').split(',').map(Number);
  const perDir = Number(arg('--per-dir', '1000'));
  const which = arg('--mode', 'both');
  const modes = which === 'both' ? ['tree', 'ext4'] : [which];
  const gzip = process.argv.includes('--gzip');
  const shape = arg('--shape', 'empty');
  const base = arg('--base', undefined);
  const dir = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'img2vm-bench-entries-'));
  try {
    const idle = run('idle', 0, perDir, false, dir).hwmKiB * 1024;
    const what =
      shape === 'mix'
        ? 'the mix of entries'
        : `${perDir} ${shape === 'small' ? '100-byte' : 'empty'} files a directory`;
    console.log(
      `node ${process.version}, idle child RSS ${(idle / 2 ** 20).toFixed(0)} MiB, ${what}${gzip ? ', gzip -1' : ''}`,
    );
    for (const n of ns) {
      if (which === 'cli') {
        const got = [];
        for (const [label, distDir] of base
          ? [
              ['base', base],
              ['this', undefined],
            ]
          : [['', undefined]]) {
          const r = await cli(n, perDir, dir, shape, distDir);
          got.push(r);
          const line = `  ${String(n).padStart(9)} ${shape === 'mix' ? 'mixed' : 'files'}  cli${label ? ` ${label.padEnd(4)}` : ''}  peak RSS ${(r.rss / 2 ** 20).toFixed(0).padStart(5)} MiB, ${r.s.toFixed(1)} s`;
          console.log(
            r.refused
              ? `${line}, refused: ${r.refused}`
              : `${line}, ${(r.rss / n).toFixed(0)} B/entry, disk ${(r.size / 2 ** 30).toFixed(1)} GiB`,
          );
        }
        if (got.length === 2 && !got[0].refused && !got[1].refused) {
          console.log(
            `  ${''.padStart(9)}        this/base: peak RSS ${(got[1].rss / got[0].rss).toFixed(2)}, time ${(got[1].s / got[0].s).toFixed(2)}`,
          );
        }
        continue;
      }
      for (const mode of modes) {
        const builds =
          mode === 'ext4' && base
            ? [
                ['base', base],
                ['this', undefined],
              ]
            : [['', undefined]];
        const got = [];
        for (const [label, distDir] of builds) {
          const r = run(mode, n, perDir, gzip, dir, shape, distDir);
          got.push(r);
          const peak = r.hwmKiB * 1024;
          const line = `  ${String(n).padStart(9)} ${shape === 'mix' ? 'mixed' : 'files'}  ${mode.padEnd(4)}${label ? ` ${label.padEnd(4)}` : ''}  peak RSS ${(peak / 2 ** 20).toFixed(0).padStart(5)} MiB`;
          if (r.refused) {
            console.log(`${line}  refused after ${(r.ms / 1000).toFixed(1)} s: ${r.refused}`);
            continue;
          }
          const per = (x) => (x / r.entries).toFixed(0).padStart(4);
          const phases = r.hwmFinish
            ? `;  phase peaks above idle, B/entry: flatten ${per(r.hwmFlatten * 1024 - idle)}, measure ${per(r.hwmMeasure * 1024 - idle)} (${(r.measureMs / 1000).toFixed(1)} s), finish ${per(r.hwmFinish * 1024 - idle)} (${(r.finishMs / 1000).toFixed(1)} s)`
            : '';
          console.log(
            `${line} = ${per(peak - idle)} B/entry above idle;  heap after flatten ${per(r.heapUsed)} B/entry (+${per(r.external)} external);  ` +
              `flatten ${(r.flattenMs / 1000).toFixed(1)} s, total ${(r.ms / 1000).toFixed(1)} s${phases}` +
              (r.fsBytes ? `;  file system ${(r.fsBytes / 2 ** 30).toFixed(1)} GiB, ${r.inodes} inodes` : '') +
              (r.sha ? `;  sha256 ${r.sha.slice(0, 16)}` : ''),
          );
        }
        if (got.length === 2 && !got[0].refused && !got[1].refused) {
          const [a, b] = got;
          const same = a.sha && b.sha ? (a.sha === b.sha ? ', same bytes' : ', BYTES DIFFER') : '';
          console.log(
            `  ${''.padStart(9)}        this/base: peak RSS ${(b.hwmKiB / a.hwmKiB).toFixed(2)}, finish peak ${(b.hwmFinish / a.hwmFinish).toFixed(2)}, measure ${(b.measureMs / a.measureMs).toFixed(2)}x time, finish ${(b.finishMs / a.finishMs).toFixed(2)}x time${same}`,
          );
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [mode, n, perDir, gz, shape] = process.argv.slice(3);
  process.stdout.write(JSON.stringify(await child(mode, Number(n), Number(perDir), gz === '1', shape)));
} else await main();
