// Benchmark: memory per entry of the flattened tree (and of the ext4 writer that holds the same files), for layers of many empty files.
// Usage (after `npm run build`): node bench/entries.mjs [--entries N[,N...]] [--per-dir D] [--mode tree|ext4|both|cli] [--gzip]
//   --entries   how many empty regular files the one generated layer holds (default 100000,990000: just under MAX_ENTRIES with the directories)
//   --per-dir   files per directory (default 1000), so a layer of N files has N/D directories too
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
// child, and the time taken. A refused layer (a limit) is printed with the message.
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
const dist = new URL('../dist/', import.meta.url);

function hwmKiB() {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
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

/** Writes one ustar header into b at off; names up to 100 bytes (the generator keeps them short). */
function header(b, off, name, size, type, mode) {
  b.fill(0, off, off + 512);
  b.write(name, off, 100, 'latin1');
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
function layer(n, perDir) {
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
    for (let i = 0; i < n; i++) {
      const d = Math.floor(i / perDir);
      for (const [name, type, mode] of i % perDir === 0 ? [[`usr/share/pkg-${d}/`, '5', 0o755], [`usr/share/pkg-${d}/file-${i}.txt`, '0', 0o644]] : [[`usr/share/pkg-${d}/file-${i}.txt`, '0', 0o644]]) {
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

async function child(mode, n, perDir, gzip) {
  const out = { mode, n };
  if (mode === 'idle') {
    out.hwmKiB = hwmKiB();
    return out;
  }
  const { LayerFlattener } = await import(new URL('rootfs/layers.js', dist));
  const t0 = performance.now();
  let src = layer(n, perDir);
  if (gzip) src = src.pipe(createGzip({ level: 1 }));
  let w;
  let target;
  let file;
  if (mode === 'ext4') {
    const { Ext4Writer } = await import(new URL('disk/ext4/index.js', dist));
    const { RawFileTarget } = await import(new URL('disk/target.js', dist));
    file = join(process.env.BENCH_DIR, `fs-${n}.img`);
    target = new RawFileTarget(file);
    w = new Ext4Writer({ target, offset: 0, uuid: '01234567-89ab-4def-8123-456789abcdef', label: 'root', hashSeed: '11111111-2222-4333-8444-555555555555', epoch: 1_700_000_000 });
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
    out.entries = stats.files + stats.dirs;
    if (w) {
      const { inodesFor, defaultFsSize } = await import(new URL('disk/sizing.js', dist));
      const content = { blocks4k: stats.blocks4k + 4096, entries: out.entries + 1000 };
      const inodeCount = inodesFor(content);
      const sizeBytes = Math.max(defaultFsSize(content), w.measure(tree.root).minimumBytes(inodeCount));
      const summary = await w.finish(tree.root, { sizeBytes, inodeCount });
      out.fsBytes = summary.sizeBytes;
      out.inodes = summary.inodes;
    }
  } catch (e) {
    out.refused = `${e.message}${e.hint ? ` (${e.hint})` : ''}`;
  } finally {
    target?.close();
    if (file) rmSync(file, { force: true });
  }
  out.ms = performance.now() - t0;
  out.hwmKiB = hwmKiB();
  return out;
}

/** An OCI archive holding one gzip layer of n empty files; its layer digests computed as it streams. */
async function ociArchive(dir, n, perDir) {
  const layout = join(dir, `layout-${n}`);
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const diff = createHash('sha256');
  const gzHash = createHash('sha256');
  const tmp = join(layout, 'layer.tmp');
  const tap = (h) => new Transform({ transform(c, _e, cb) { h.update(c); cb(null, c); } });
  await pipeline(layer(n, perDir), tap(diff), createGzip({ level: 1 }), tap(gzHash), createWriteStream(tmp));
  const blob = (bytes) => {
    const d = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(layout, 'blobs', 'sha256', d), bytes);
    return { digest: `sha256:${d}`, size: bytes.length };
  };
  const gzDigest = gzHash.digest('hex');
  const gzSize = statSync(tmp).size;
  rmSync(join(layout, 'blobs', 'sha256', gzDigest), { force: true });
  spawnSync('mv', [tmp, join(layout, 'blobs', 'sha256', gzDigest)]);
  const config = blob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${diff.digest('hex')}`] } })));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${gzDigest}`, size: gzSize }],
  };
  const md = blob(Buffer.from(JSON.stringify(manifest)));
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: manifest.mediaType, ...md, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }));
  const archive = join(dir, `entries-${n}.tar`);
  spawnSync('tar', ['-C', layout, '-cf', archive, '.']);
  rmSync(layout, { recursive: true, force: true });
  return archive;
}

/** A whole conversion under GNU time: peak RSS of the largest process, seconds, the disk's apparent size, or why it was refused. */
async function cli(n, perDir, dir) {
  const archive = await ociArchive(dir, n, perDir);
  const out = join(dir, `disk-${n}.raw`);
  const bin = fileURLToPath(new URL('../bin/img2vm', import.meta.url));
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'RSS %M', bin, `oci-archive:${archive}`, '-o', out, '--init', 'img2vm', '--boot', 'bios', '--json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const s = (performance.now() - t0) / 1000;
  const rss = Number(/RSS (\d+)/.exec(r.stderr)?.[1] ?? 0) * 1024;
  let size;
  try {
    size = statSync(out).size;
  } catch {}
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

function run(mode, n, perDir, gzip, dir) {
  const r = spawnSync(process.execPath, ['--expose-gc', self, '--child', mode, String(n), String(perDir), gzip ? '1' : '0'], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
    env: { ...process.env, BENCH_DIR: dir },
  });
  if (r.status !== 0) throw new Error(`${mode} ${n} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function main() {
  const ns = arg('--entries', '100000,990000').split(',').map(Number);
  const perDir = Number(arg('--per-dir', '1000'));
  const which = arg('--mode', 'both');
  const modes = which === 'both' ? ['tree', 'ext4'] : [which];
  const gzip = process.argv.includes('--gzip');
  const dir = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'img2vm-bench-entries-'));
  try {
    const idle = run('idle', 0, perDir, false, dir).hwmKiB * 1024;
    console.log(`node ${process.version}, idle child RSS ${(idle / 2 ** 20).toFixed(0)} MiB, ${perDir} empty files a directory${gzip ? ', gzip -1' : ''}`);
    for (const n of ns) {
      if (which === 'cli') {
        const r = await cli(n, perDir, dir);
        const line = `  ${String(n).padStart(9)} files  cli   peak RSS ${(r.rss / 2 ** 20).toFixed(0).padStart(5)} MiB, ${r.s.toFixed(1)} s`;
        console.log(r.refused ? `${line}, refused: ${r.refused}` : `${line}, ${(r.rss / n).toFixed(0)} B/entry, disk ${(r.size / 2 ** 30).toFixed(1)} GiB`);
        continue;
      }
      for (const mode of modes) {
        const r = run(mode, n, perDir, gzip, dir);
        const peak = r.hwmKiB * 1024;
        const line = `  ${String(n).padStart(9)} files  ${mode.padEnd(4)}  peak RSS ${(peak / 2 ** 20).toFixed(0).padStart(5)} MiB`;
        if (r.refused) {
          console.log(`${line}  refused after ${(r.ms / 1000).toFixed(1)} s: ${r.refused}`);
          continue;
        }
        const per = (x) => (x / r.entries).toFixed(0).padStart(4);
        console.log(
          `${line} = ${per(peak - idle)} B/entry above idle;  heap after flatten ${per(r.heapUsed)} B/entry (+${per(r.external)} external);  ` +
            `flatten ${(r.flattenMs / 1000).toFixed(1)} s, total ${(r.ms / 1000).toFixed(1)} s` +
            (r.fsBytes ? `;  file system ${(r.fsBytes / 2 ** 30).toFixed(1)} GiB, ${r.inodes} inodes` : ''),
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [mode, n, perDir, gz] = process.argv.slice(3);
  process.stdout.write(JSON.stringify(await child(mode, Number(n), Number(perDir), gz === '1')));
} else await main();
