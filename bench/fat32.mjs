// Benchmark: the ESP written by writeFat32 (one node process) against the current path, mkfs.fat --offset then mmd + mcopy per file.
// Usage (after `npm run build`): node bench/fat32.mjs [--esp-mib N] [--runs N]
// Both make a FAT32 ESP (default 256 MiB) at 1 MiB into a sparse raw disk and put in it a 10 MB kernel, a 30 MB initrd
// (read from files, streamed) and the small systemd-boot files. Prints wall s / CPU s / peak RSS (GNU time, package
// `time`) per step, the median of the runs, and checks that both ESPs hold the same files (mcopy back, compared).
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MiB = 1 << 20;
const OFFSET = MiB;
const args = process.argv.slice(2);
const value = (name, dflt) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
const MTOOLS = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

/** The ESP's files as (ESP path, host file); the big ones are pseudo-random so nothing compresses or dedups. */
function makeInputs(dir) {
  const files = [
    ['vmlinuz-6.1.0-28-cloud-amd64', 10_000_000],
    ['initrd.img-6.1.0-28-cloud-amd64', 30_000_000],
    ['EFI/BOOT/BOOTX64.EFI', 120_000],
    ['EFI/systemd/systemd-bootx64.efi', 120_000],
    ['loader/loader.conf', 40],
    ['loader/entries/img2vm-6.1.0-28-cloud-amd64.conf', 200],
  ];
  let s = 42;
  return files.map(([dest, size], i) => {
    const b = Buffer.alloc(size);
    for (let k = 0; k + 4 <= size; k += 4) b.writeUInt32LE((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), k);
    const src = join(dir, `in-${i}`);
    writeFileSync(src, b);
    return { dest, src, size };
  });
}

async function child(disk, espMiB, inputsJson) {
  const { writeFat32 } = await import('../dist/disk/fat32.js');
  const { RawFileTarget } = await import('../dist/disk/target.js');
  const inputs = JSON.parse(inputsJson);
  const t = new RawFileTarget(disk);
  t.resize(OFFSET + espMiB * MiB + MiB);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const files = inputs.map((f) => ({
    path: f.dest,
    content: { size: f.size, read: () => createReadStream(f.src, { highWaterMark: MiB }) },
  }));
  await writeFat32(
    t,
    { offset: OFFSET, size: espMiB * MiB, volumeId: 0xc0ffee42, label: 'EFI', epoch: 1_700_000_000 },
    files,
  );
  t.close();
  process.stdout.write(
    JSON.stringify({
      inner: (performance.now() - t0) / 1000,
      innerCpu: ((c) => (c.user + c.system) / 1e6)(process.cpuUsage(c0)),
    }),
  );
}

/** Runs a process to completion under GNU time: wall and CPU seconds and peak RSS. */
function timed(cmd, argv, env = process.env) {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/time', ['-f', 'TIME %e %U %S %M', cmd, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    let err = '';
    let out = '';
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

const sum = (rs) => ({
  seconds: rs.reduce((a, r) => a + r.seconds, 0),
  cpu: rs.reduce((a, r) => a + r.cpu, 0),
  rssKiB: Math.max(...rs.map((r) => r.rssKiB)),
  processes: rs.length,
});

async function current(disk, espMiB, inputs) {
  const rs = [];
  spawnSync('truncate', ['-s', String(OFFSET + espMiB * MiB + MiB), disk]);
  // The argv of src/disk/fat.ts (mkfsFatArgs, fatCopy), spelled out here because the bench must not depend on a RunContext.
  rs.push(
    await timed('mkfs.fat', [
      '-F',
      '32',
      '-S',
      '512',
      '-s',
      '1',
      '-n',
      'EFI',
      '--invariant',
      '-i',
      'C0FFEE42',
      `--offset=${OFFSET / 512}`,
      disk,
      String(espMiB * 1024),
    ]),
  );
  const img = `${disk}@@${OFFSET}`;
  const dirs = new Set();
  for (const f of inputs) {
    const parts = f.dest.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const d of [...dirs].sort()) rs.push(await timed('mmd', ['-i', img, `::/${d}`], MTOOLS));
  for (const f of inputs) rs.push(await timed('mcopy', ['-i', img, '-o', f.src, `::/${f.dest}`], MTOOLS));
  return sum(rs);
}

/** Both ESPs must hold the same files, or the timing compares nothing. */
function checkSame(disk, inputs, work) {
  const out = join(work, 'back');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out);
  const r = spawnSync('mcopy', ['-s', '-n', '-i', `${disk}@@${OFFSET}`, '::/*', out], {
    env: MTOOLS,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`mcopy back: ${r.stderr}`);
  for (const f of inputs)
    if (!readFileSync(join(out, f.dest)).equals(readFileSync(f.src))) throw new Error(`${disk}: ${f.dest} differs`);
}

async function main() {
  const espMiB = value('--esp-mib', 256);
  const runs = value('--runs', 3);
  const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-fat32-'));
  const self = fileURLToPath(import.meta.url);
  const ours = [];
  const theirs = [];
  try {
    const inputs = makeInputs(work);
    for (let i = 0; i < runs; i++) {
      const a = join(work, `ours-${i}.raw`);
      const b = join(work, `current-${i}.raw`);
      for (const v of i % 2 === 0 ? ['ours', 'current'] : ['current', 'ours']) {
        spawnSync('sync');
        if (v === 'ours') {
          const r = await timed(process.execPath, [self, '--child', a, String(espMiB), JSON.stringify(inputs)]);
          ours.push({ ...r, ...JSON.parse(r.out), allocated: statSync(a).blocks * 512 });
        } else theirs.push({ ...(await current(b, espMiB, inputs)), allocated: statSync(b).blocks * 512 });
      }
      checkSame(a, inputs, work);
      checkSame(b, inputs, work);
      rmSync(a);
      rmSync(b);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const median = (rows, k) => [...rows.map((r) => r[k])].sort((x, y) => x - y)[Math.floor(rows.length / 2)];
  const line = (name, rows) =>
    `${name}: ${median(rows, 'seconds').toFixed(2)} s wall / ${median(rows, 'cpu').toFixed(2)} s CPU / ${(median(rows, 'rssKiB') / 1024).toFixed(0)} MiB peak RSS, ${(median(rows, 'allocated') / MiB).toFixed(1)} MiB allocated`;
  console.log(`${espMiB} MiB ESP at 1 MiB, a 10 MB kernel + a 30 MB initrd + 4 small files; median of ${runs}`);
  console.log(line('writeFat32 (1 node process)', ours));
  console.log(line(`mkfs.fat + mmd + mcopy (${theirs[0].processes} processes)`, theirs));
  console.log(
    `writeFat32 alone, timed inside its process (img2vm's own process is running anyway): ${median(ours, 'inner').toFixed(2)} s wall / ${median(ours, 'innerCpu').toFixed(2)} s CPU`,
  );
  console.log(
    `ratio writeFat32/current: wall ${(median(ours, 'seconds') / median(theirs, 'seconds')).toFixed(2)}, CPU ${(median(ours, 'cpu') / median(theirs, 'cpu')).toFixed(2)}`,
  );
}

if (args[0] === '--child') await child(args[1], Number(args[2]), args[3]);
else await main();
