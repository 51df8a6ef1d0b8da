// Benchmark: writing a qcow2 directly (Qcow2Target) against the current path, a raw image (RawFileTarget) then `qemu-img convert -O qcow2`.
// Usage (after `npm run build`): node bench/qcow2.mjs [--compress] [--data-mib N] [--runs N] [--formats]
// --formats also times, from the same raw, `qemu-img convert` to vmdk/vhdx/vhd/vdi plus makeReproducible on the result.
// Both write the same disk-stage-like pattern: 1 GiB virtual, N MiB (default 400) of file data in 1 MiB chunks that
// are not cluster-aligned, and scattered 4 KiB metadata writes (some rewriting earlier ones). Prints seconds (median),
// the ratio direct/current (lower is better), peak RSS of each process, write syscalls, and the output sizes.
// Neither side fsyncs (qemu-img convert's default cache mode does not either); everything stays in the page cache.
// Each process runs under GNU time (/usr/bin/time, Debian package `time`, installed by scripts/install-deps.sh).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MiB = 1 << 20;
const VIRTUAL = 1024 * MiB;
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, dflt) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);

/** The write pattern, as a deterministic list of operations (the same for every variant and run). */
function* pattern(dataMiB, pool) {
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const meta = (fill) => Buffer.alloc(4096, fill);
  yield [meta(1).subarray(0, 512), 0]; // partition table
  for (let g = 0; g < 8; g++) yield [meta(2), g * 128 * MiB + 4096]; // superblocks and group descriptors
  const metaOffsets = [];
  let off = 64 * MiB + 4096;
  for (let i = 0; i < dataMiB; i++) {
    const from = Math.floor(rnd() * (pool.length - MiB));
    yield [pool.subarray(from, from + MiB), off];
    off += MiB;
    for (let k = 0; k < 4; k++) {
      // inode tables, directory blocks, bitmaps: anywhere, 4 KiB aligned
      const m = Math.floor(rnd() * (VIRTUAL / 4096)) * 4096;
      metaOffsets.push(m);
      yield [meta(3 + (i & 7)), m];
    }
  }
  // The file-system writer goes back to update bitmaps and the superblocks at the end.
  for (let i = 0; i < metaOffsets.length; i += 16) yield [meta(0x77), metaOffsets[i]];
  for (let g = 0; g < 8; g++) yield [meta(4), g * 128 * MiB + 4096];
}

function makePool(compressible) {
  const pool = Buffer.alloc(16 * MiB);
  let s = 987654321;
  for (let i = 0; i < pool.length; i += 4) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pool.writeUInt32LE(compressible ? (s & 0x0f0f0f0f) | 0x40404040 : s, i);
  }
  return pool;
}

async function child(variant, out, dataMiB, compress) {
  const { Qcow2Target } = await import('../dist/disk/qcow2/target.js');
  const { RawFileTarget } = await import('../dist/disk/target.js');
  const pool = makePool(compress);
  const t0 = performance.now();
  const target = variant === 'direct' ? new Qcow2Target(out, { size: VIRTUAL, compress }) : new RawFileTarget(out);
  if (variant !== 'direct') target.resize(VIRTUAL);
  let writes = 0;
  for (const [buf, off] of pattern(dataMiB, pool)) {
    target.write(buf, off);
    writes++;
  }
  target.close();
  const seconds = (performance.now() - t0) / 1000;
  const stats = variant === 'direct' ? target.stats : { writeCalls: writes };
  process.stdout.write(JSON.stringify({ inner: seconds, writeCalls: stats.writeCalls, writes }));
}

/** Runs a process to completion under GNU time (package `time`): wall and CPU seconds and peak RSS, the same way for every process. */
function timed(cmd, argv) {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/time', ['-f', 'TIME %e %U %S %M', cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', (e) => reject(new Error(`cannot run /usr/bin/time (apt-get install time): ${e.message}`)));
    p.on('close', (code) => {
      const m = /TIME (\S+) (\S+) (\S+) (\d+)/.exec(err);
      if (code !== 0 || !m) return reject(new Error(`${cmd} failed (${code}): ${err}`));
      resolve({ seconds: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), rssKiB: Number(m[4]), out });
    });
  });
}

async function main() {
  const compress = flag('--compress');
  const dataMiB = value('--data-mib', 400);
  const runs = value('--runs', 3);
  const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-qcow2-'));
  const self = fileURLToPath(import.meta.url);
  const direct = [];
  const current = [];
  try {
    for (let i = 0; i < runs; i++) {
      const q = join(work, `direct-${i}.qcow2`);
      const raw = join(work, `current-${i}.raw`);
      const conv = join(work, `current-${i}.qcow2`);
      // Alternate which goes first, so neither always gets the warmer page cache.
      const order = i % 2 === 0 ? ['direct', 'current'] : ['current', 'direct'];
      for (const v of order) {
        spawnSync('sync');
        if (v === 'direct') {
          const r = await timed(process.execPath, [
            self,
            '--child',
            'direct',
            q,
            String(dataMiB),
            compress ? '1' : '0',
          ]);
          direct.push({ ...JSON.parse(r.out), seconds: r.seconds, cpu: r.cpu, rssKiB: r.rssKiB, file: statSync(q) });
        } else {
          const w = await timed(process.execPath, [self, '--child', 'raw', raw, String(dataMiB), compress ? '1' : '0']);
          const c = await timed('qemu-img', [
            'convert',
            '-f',
            'raw',
            '-O',
            'qcow2',
            ...(compress ? ['-c'] : []),
            raw,
            conv,
          ]);
          current.push({
            ...JSON.parse(w.out),
            seconds: w.seconds,
            cpu: w.cpu,
            rssKiB: w.rssKiB,
            convertSeconds: c.seconds,
            convertCpu: c.cpu,
            convertRssKiB: c.rssKiB,
            file: statSync(conv),
            raw: statSync(raw),
          });
        }
      }
      // The benchmark is only worth something if both produce the same disk.
      const cmp = spawnSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', q, conv], { encoding: 'utf8' });
      if (cmp.status !== 0) throw new Error(`outputs differ: ${cmp.stdout}${cmp.stderr}`);
      const chk = spawnSync('qemu-img', ['check', q], { encoding: 'utf8' });
      if (chk.status !== 0) throw new Error(`qemu-img check: ${chk.stdout}${chk.stderr}`);
      rmSync(q);
      rmSync(raw);
      rmSync(conv);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const med = (rows, k) => median(rows.map((r) => r[k]));
  const d = med(direct, 'seconds');
  const w = med(current, 'seconds');
  const c = med(current, 'convertSeconds');
  const dc = med(direct, 'cpu');
  const wc = med(current, 'cpu');
  const cc = med(current, 'convertCpu');
  const mib = (kib) => `${(kib / 1024).toFixed(0)} MiB`;
  const size = (s) => `${(s.size / MiB).toFixed(1)} MiB (${((s.blocks * 512) / MiB).toFixed(1)} MiB allocated)`;
  const last = { d: direct.at(-1), c: current.at(-1) };
  const cx = compress ? ' -c' : '';
  console.log(
    `pattern: ${dataMiB} MiB data in 1 MiB chunks + ${last.d.writes - dataMiB} small writes, 1 GiB virtual${compress ? ', compressed' : ''}; median of ${runs}; wall s / CPU s (user+sys) / peak RSS per process (node processes include a 16 MiB data pool)`,
  );
  console.log(
    `current: RawFileTarget ${w.toFixed(2)} / ${wc.toFixed(2)} / ${mib(med(current, 'rssKiB'))}  +  qemu-img convert${cx} ${c.toFixed(2)} / ${cc.toFixed(2)} / ${mib(med(current, 'convertRssKiB'))}  =  ${(w + c).toFixed(2)} / ${(wc + cc).toFixed(2)}`,
  );
  console.log(
    `direct : Qcow2Target${compress ? ' (compress)' : ''} ${d.toFixed(2)} / ${dc.toFixed(2)} / ${mib(med(direct, 'rssKiB'))}`,
  );
  console.log(`ratio direct/current: wall ${(d / (w + c)).toFixed(2)}, CPU ${(dc / (wc + cc)).toFixed(2)}`);
  console.log(
    `writing alone, timed inside the node processes: Qcow2Target ${med(direct, 'inner').toFixed(2)} s, RawFileTarget ${med(current, 'inner').toFixed(2)} s`,
  );
  console.log(
    `write syscalls: Qcow2Target ${last.d.writeCalls} for ${last.d.writes} writes (RawFileTarget: one per write)`,
  );
  console.log(`files: direct qcow2 ${size(last.d.file)}; current raw ${size(last.c.raw)} + qcow2 ${size(last.c.file)}`);
}

/** The other formats stay convert + patch: how long each step takes for the same disk. */
async function formats() {
  const { makeReproducible } = await import('../dist/output/reproducible.js');
  const { createRandom } = await import('../dist/core/random.js');
  const { qemuImgConvertArgs } = await import('../dist/output/qemu-img.js');
  const dataMiB = value('--data-mib', 400);
  const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-formats-'));
  const self = fileURLToPath(import.meta.url);
  try {
    const raw = join(work, 'disk.raw');
    await timed(process.execPath, [self, '--child', 'raw', raw, String(dataMiB), '0']);
    console.log(`\nconvert + makeReproducible from the same raw (${dataMiB} MiB data):`);
    console.log('format  convert s  patch ms  file MiB');
    for (const [id, qemu, options] of [
      ['vmdk', 'vmdk', 'subformat=monolithicSparse'],
      ['vhdx', 'vhdx', 'subformat=dynamic'],
      ['vhd', 'vpc', 'subformat=dynamic,force_size=on'],
      ['vdi', 'vdi', undefined],
    ]) {
      const out = join(work, `disk.${id}`);
      spawnSync('sync');
      const c = await timed('qemu-img', qemuImgConvertArgs(raw, out, qemu, { options }));
      const t0 = performance.now();
      makeReproducible(id, out, createRandom('bench'), 1_700_000_000);
      const patchMs = performance.now() - t0;
      console.log(
        `${id.padEnd(6)}  ${c.seconds.toFixed(2).padStart(9)}  ${patchMs.toFixed(1).padStart(8)}  ${(statSync(out).size / MiB).toFixed(1).padStart(8)}`,
      );
      rmSync(out);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (args[0] === '--child') await child(args[1], args[2], Number(args[3]), args[4] === '1');
else {
  await main();
  if (flag('--formats')) await formats();
}
