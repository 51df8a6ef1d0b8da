// Benchmark: img2vm's ext4 writer against `mke2fs -d` (the tool floor) on the same content, in one run, with peak RSS.
// Usage (after `npm run build`): node bench/ext4.mjs [WORKDIR]
// Scenarios: (a) one 1 GiB file; (b) 100,000 files of 4 KiB, one directory holding 100,000 entries
// (90,000 files and 10,000 subdirectories of one file each); (c) the same 100,000 files spread over
// 100 directories of 1,000, where mke2fs -d is not quadratic. Each tool reads the same source
// directory from a warm page cache; the writer is also timed fed from memory (no source reads).
// Times include a final `sync -f` of the image for both. Peak RSS from /usr/bin/time -v.
// mke2fs -d links each entry by scanning its (linear) directory, so (b) costs it O(n^2): it runs
// once there, stopped after MKE2FS_LIMIT seconds (reported as "> limit").
import { execFileSync, spawnSync } from 'node:child_process';
import {
  createReadStream,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MiB = 1024 * 1024;
const self = fileURLToPath(import.meta.url);
const SCENARIOS = {
  a: { title: '1 GiB in one file', sizeBytes: 1536 * MiB, entries: 1 },
  b: {
    title: '100,000 files of 4 KiB, one dir of 100,000 entries',
    sizeBytes: 1024 * MiB,
    entries: 100_000 + 10_000,
    mke2fsRuns: 1,
  },
  c: { title: '100,000 files of 4 KiB in 100 dirs of 1,000', sizeBytes: 1024 * MiB, entries: 100_000 + 101 },
};
const MKE2FS_LIMIT = Number(process.env.MKE2FS_LIMIT ?? 300);
/** Where file i of scenarios b and c lives. */
function place(scen, i) {
  if (scen === 'c') return [`dir-${Math.floor(i / 1000)}`, `file-${i}`];
  return i < 90_000 ? [`file-${i}`] : [`dir-${i}`, 'f'];
}

async function child(mode, scen, src, out) {
  const { Ext4Writer } = await import('../dist/disk/ext4/index.js');
  const { RawFileTarget } = await import('../dist/disk/target.js');
  const { inodesFor } = await import('../dist/disk/sizing.js');
  const t0 = performance.now();
  const target = new RawFileTarget(out);
  const w = new Ext4Writer({
    target,
    offset: 0,
    uuid: '01234567-89ab-4def-8123-456789abcdef',
    label: 'root',
    hashSeed: '11111111-2222-4333-8444-555555555555',
    epoch: 1_700_000_000,
  });
  const meta = (st) => ({
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtime: { sec: Math.floor(st.mtimeMs / 1000), nsec: 0 },
    xattrs: new Map(),
  });
  let root;
  if (mode === 'dir') {
    const walk = async (dir) => {
      const node = { kind: 'dir', meta: meta(lstatSync(dir)), entries: new Map() };
      for (const ent of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, ent.name);
        if (ent.isDirectory()) {
          node.entries.set(ent.name, await walk(p));
          continue;
        }
        const st = lstatSync(p);
        const data =
          st.size <= MiB
            ? w.putBuffer(readFileSync(p))
            : await w.put(createReadStream(p, { highWaterMark: MiB }), st.size);
        node.entries.set(ent.name, { kind: 'file', meta: meta(st), size: st.size, data });
      }
      return node;
    };
    root = await walk(src);
  } else {
    root = await generate(w, scen);
  }
  const stats = { entries: SCENARIOS[scen].entries, blocks4k: 0 };
  const summary = await w.finish(root, { sizeBytes: SCENARIOS[scen].sizeBytes, inodeCount: inodesFor(stats) });
  target.close();
  execFileSync('sync', ['-f', out]);
  process.stdout.write(
    JSON.stringify({ inner: (performance.now() - t0) / 1000, writes: summary.writes, bytes: summary.bytesWritten }),
  );
}

/** The same content as the source directory, made in memory. */
async function generate(w, scen) {
  const m = { mode: 0o644, uid: 0, gid: 0, mtime: { sec: 1_700_000_000, nsec: 0 }, xattrs: new Map() };
  const d = () => ({ kind: 'dir', meta: { ...m, mode: 0o755 }, entries: new Map() });
  const root = d();
  if (scen === 'a') {
    const piece = Buffer.alloc(MiB);
    for (let i = 0; i < piece.length; i++) piece[i] = (i * 131 + 7) & 0xff || 1;
    async function* chunks() {
      for (let i = 0; i < 1024; i++) yield piece;
    }
    root.entries.set('big', { kind: 'file', meta: m, size: 1024 * MiB, data: await w.put(chunks(), 1024 * MiB) });
    return root;
  }
  const flat = d();
  root.entries.set('flat', flat);
  const buf = Buffer.alloc(4096, 0x61);
  for (let i = 0; i < 100_000; i++) {
    buf.writeUInt32LE(i, 0);
    const f = { kind: 'file', meta: m, size: 4096, data: w.putBuffer(buf) };
    const path = place(scen, i);
    let at = flat;
    for (const part of path.slice(0, -1)) {
      if (!at.entries.has(part)) at.entries.set(part, d());
      at = at.entries.get(part);
    }
    at.entries.set(path[path.length - 1], f);
  }
  return root;
}

function prepare(work, scen) {
  const src = join(work, `src-${scen}`);
  mkdirSync(src);
  if (scen === 'a') {
    const piece = Buffer.alloc(MiB);
    for (let i = 0; i < piece.length; i++) piece[i] = (i * 131 + 7) & 0xff || 1;
    writeFileSync(join(src, 'big'), Buffer.concat(Array(1024).fill(piece)));
  } else {
    const flat = join(src, 'flat');
    mkdirSync(flat);
    const buf = Buffer.alloc(4096, 0x61);
    for (let i = 0; i < 100_000; i++) {
      buf.writeUInt32LE(i, 0);
      const path = place(scen, i);
      if (path.length > 1) mkdirSync(join(flat, ...path.slice(0, -1)), { recursive: true });
      writeFileSync(join(flat, ...path), buf);
    }
  }
  // Warm the page cache so both tools read the source from memory.
  execFileSync('sh', ['-c', `find ${src} -type f -exec cat {} + > /dev/null`]);
  return src;
}

function timed(argv, env, limitS) {
  const r = spawnSync('/usr/bin/time', ['-v', ...argv], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 1 << 26,
    ...(limitS ? { timeout: limitS * 1000, killSignal: 'SIGKILL' } : {}),
  });
  if (r.error?.code === 'ETIMEDOUT' || r.signal) return { seconds: Infinity, rss: NaN, stdout: '' };
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? 0) / 1024;
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(r.stderr);
  const seconds = wall ? Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]) : NaN;
  return { seconds, rss, stdout: r.stdout };
}

async function main() {
  const { inodesFor, journalMiBFor } = await import('../dist/disk/sizing.js');
  const { MKE2FS_CONF, mke2fsArgs } = await import('./mke2fs.mjs');
  const work = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'img2vm-bench-ext4-'));
  const conf = join(work, 'mke2fs.conf');
  writeFileSync(conf, MKE2FS_CONF);
  const rows = [];
  try {
    for (const scen of Object.keys(SCENARIOS)) {
      const s = SCENARIOS[scen];
      const src = prepare(work, scen);
      const img = join(work, `out-${scen}.img`);
      const runs = { mke2fs: [], dir: [], mem: [] };
      for (let i = 0; i < 3; i++) {
        rmSync(img, { force: true });
        execFileSync('truncate', ['-s', String(s.sizeBytes), img]);
        const args = mke2fsArgs({
          image: img,
          offset: 0,
          size: s.sizeBytes,
          uuid: '01234567-89ab-4def-8123-456789abcdef',
          label: 'root',
          inodes: inodesFor({ entries: s.entries, blocks4k: 0 }),
          journalMiB: journalMiBFor(s.sizeBytes),
          source: src,
          hashSeed: '11111111-2222-4333-8444-555555555555',
        });
        if (i < (s.mke2fsRuns ?? 3)) {
          const m = timed(
            ['sh', '-c', `mke2fs "$@" && sync -f ${img}`, 'mke2fs', ...args],
            { MKE2FS_CONFIG: conf },
            s.mke2fsRuns ? MKE2FS_LIMIT : undefined,
          );
          runs.mke2fs.push(m);
          console.error(`(${scen}) mke2fs -d: ${m.seconds} s, ${m.rss.toFixed(0)} MiB`);
        }
        for (const mode of ['dir', 'mem']) {
          rmSync(img, { force: true });
          const r = timed([process.execPath, self, '--run', mode, scen, src, img]);
          runs[mode].push({ ...r, ...JSON.parse(r.stdout) });
          console.error(
            `(${scen}) writer from ${mode}: ${r.seconds} s (${runs[mode].at(-1).inner.toFixed(2)} s inside node), ${r.rss.toFixed(0)} MiB`,
          );
        }
        const fsck = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8' });
        if (fsck.status !== 0) throw new Error(`e2fsck on the writer's image failed:\n${fsck.stdout}`);
      }
      const med = (xs, k) => [...xs.map((x) => x[k])].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      rows.push({
        scen,
        title: s.title,
        mke2fs: med(runs.mke2fs, 'seconds'),
        dir: med(runs.dir, 'seconds'),
        mem: med(runs.mem, 'seconds'),
        rssM: med(runs.mke2fs, 'rss'),
        rssD: med(runs.dir, 'rss'),
        rssW: med(runs.mem, 'rss'),
        writes: med(runs.mem, 'writes'),
      });
      rmSync(src, { recursive: true, force: true });
      rmSync(img, { force: true });
    }
  } finally {
    if (!process.argv[2]) rmSync(work, { recursive: true, force: true });
  }
  console.log(
    'scenario                                                 | mke2fs -d | writer (dir) | ratio | writer (memory) | ratio | peak RSS mke2fs / writer(dir) / writer(mem) | writes',
  );
  for (const r of rows) {
    const cut = !Number.isFinite(r.mke2fs);
    const mk = cut ? `> ${MKE2FS_LIMIT}` : r.mke2fs.toFixed(2);
    const ratio = (x) => (cut ? `< ${(x / MKE2FS_LIMIT).toFixed(3)}` : (x / r.mke2fs).toFixed(2));
    console.log(
      `(${r.scen}) ${r.title.padEnd(48)} | ${mk.padStart(7)} s | ${r.dir.toFixed(2).padStart(10)} s | ${ratio(r.dir)} | ${r.mem.toFixed(2).padStart(13)} s | ${ratio(r.mem)} | ${cut ? '-' : r.rssM.toFixed(0)} / ${r.rssD.toFixed(0)} / ${r.rssW.toFixed(0)} MiB | ${r.writes}`,
    );
  }
  console.log(
    'times: wall clock (process start to exit, /usr/bin/time), median of 3, each ending with sync -f of the image; ratio = writer / mke2fs (lower is better)',
  );
}

if (process.argv[2] === '--run') await child(process.argv[3], process.argv[4], process.argv[5], process.argv[6]);
else await main();
