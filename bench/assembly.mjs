// Benchmark (issues 11, 20): img2vm's one-pass assembly against the classic loop-mount pipeline and the tool floor,
// and against the limits of the machine — the inflate floor (every layer decompressed to /dev/null, one core and all
// cores) and the daemon floor (docker export into /dev/null) — in the same run, cold page cache, best of N
// interleaved; then a scale run on a synthetic 2 GB / 100,000-file image, against its own tool floor and daemon
// floor too.
// Usage (as root, after the set-up): node bench/assembly.mjs [--runs 3] [--skip-scale] [--files 100000] [--big-mib 1100]
//   [--before-bin PATH] (another img2vm build, run interleaved: before and after in the same run) [--scale-runs 1]
//   (a) img2vm from the daemon, --raw      vs  (b) classic: docker export → loop → mkfs → mount → tar → extlinux → qemu-img
//   (c) img2vm from an OCI archive, --raw  vs  (d) tool floor: untar the layers, mke2fs -d, qemu-img
//   (e) daemon floor: docker export of the image's container into /dev/null
//   (f) inflate floor: every gzip layer of (c) to /dev/null, gzip -dc and Node's zlib, one at a time and all at once
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');
const BIN = join(REPO, 'bin', 'img2vm');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1];
};
const RUNS = Number(arg('runs', 3));
const FILES = Number(arg('files', 100000));
const BIG_MIB = Number(arg('big-mib', 1100));
const SKIP_SCALE = process.argv.includes('--skip-scale');
// Another build of img2vm (e.g. the previous commit's bin/img2vm) run interleaved with this one: before and after in
// the same run.
const BEFORE_BIN = arg('before-bin', undefined);
const ONLY_SCALE = process.argv.includes('--only-scale');
const SCALE_RUNS = Number(arg('scale-runs', 1));
const work = mkdtempSync(join(process.env.BENCH_TMP ?? tmpdir(), 'img2vm-bench-asm-'));
const env = { ...process.env, CI: 'true', SOURCE_DATE_EPOCH: '1700000000' };

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28, env, ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}\n${r.stdout}`.slice(0, 4000));
  return r.stdout;
}
const bash = (script) => sh('bash', ['-euo', 'pipefail', '-c', script]);

/** Cold page cache, so reading the source is part of what is measured. */
function dropCaches() {
  execFileSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    /* not permitted: measure warm, and say so */
    dropCaches.warm = true;
  }
}

/** Runs a command under GNU time: wall seconds and peak RSS (MiB) of the process tree's largest member. */
function timed(cmd, args) {
  dropCaches();
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'RSS %M', cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, env });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  const rss = Number(/RSS (\d+)/.exec(r.stderr)?.[1] ?? 0) / 1024;
  return { s, rss, stdout: r.stdout };
}

const onDisk = (f) => statSync(f).blocks * 512;
const mib = (n) => `${(n / 1048576).toFixed(0)} MiB`;

// ---- the image: Debian plus its kernel and systemd (what img2vm's guest build makes), two layers ----
function kernelReadyImage() {
  bash(`bash ${REPO}/fixtures/debian-image.sh img2vm-demo:bookworm bookworm >/dev/null`);
  const j = JSON.parse(sh(BIN, ['img2vm-demo:bookworm', '-o', join(work, 'prep.raw'), '--boot', 'bios', '--json']));
  rmSync(join(work, 'prep.raw'), { force: true });
  return j.guestImage;
}

/** An OCI archive of a daemon image, layers gzip'ed as a registry would serve them. */
function ociArchiveOf(image, dest) {
  const dir = join(work, `save-${Date.now()}`);
  mkdirSync(dir);
  bash(`docker save ${image} | tar -x -C ${dir}`);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))[0];
  const layout = join(work, `layout-${Date.now()}`);
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  const blob = (bytes) => {
    const d = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(layout, 'blobs', 'sha256', d), bytes);
    return { digest: `sha256:${d}`, size: bytes.length };
  };
  const layers = manifest.Layers.map((l) => {
    const gz = join(dir, `${l.replace(/\//g, '_')}.gz`);
    bash(`gzip -6 -c ${join(dir, l)} > ${gz}`);
    const b = readFileSync(gz);
    return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...blob(b) };
  });
  const config = {
    mediaType: 'application/vnd.oci.image.config.v1+json',
    ...blob(readFileSync(join(dir, manifest.Config))),
  };
  const m = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers };
  const md = blob(Buffer.from(JSON.stringify(m)));
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: m.mediaType, ...md, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
  bash(`tar -C ${layout} -cf ${dest} .`);
  rmSync(dir, { recursive: true, force: true });
  rmSync(layout, { recursive: true, force: true });
  return layers.length;
}

// ---- the baselines ----
const CLASSIC = `
set -euo pipefail
img=$1; out=$2; size=$3; w=$(mktemp -d "$4/classic-XXXXXX"); boot=$5
cid=$(docker create "$img" /bin/true)
trap 'umount "$w/mnt" 2>/dev/null || true; [ -n "\${loop:-}" ] && losetup -d "$loop" 2>/dev/null || true; docker rm "$cid" >/dev/null 2>&1 || true; rm -rf "$w"' EXIT
truncate -s "$size" "$w/disk.raw"
printf 'label: dos\\nstart=2048, type=83, bootable\\n' | sfdisk -q "$w/disk.raw"
loop=$(losetup -f --show -o 1048576 "$w/disk.raw")
mkfs.ext4 -q -F "$loop"
mkdir "$w/mnt" && mount "$loop" "$w/mnt"
docker export "$cid" | tar -x --numeric-owner --xattrs --xattrs-include='*' -C "$w/mnt"
if [ "$boot" = boot ]; then
mkdir -p "$w/mnt/boot/extlinux"
k=$(ls "$w/mnt/boot" | grep '^vmlinuz-' | tail -1); i=$(ls "$w/mnt/boot" | grep '^initrd.img-' | tail -1)
printf 'DEFAULT linux\\nLABEL linux\\n  KERNEL /boot/%s\\n  APPEND root=/dev/vda1 ro console=ttyS0\\n  INITRD /boot/%s\\n' "$k" "$i" > "$w/mnt/boot/extlinux/extlinux.conf"
extlinux --install "$w/mnt/boot/extlinux" 2>/dev/null
fi
umount "$w/mnt"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$w/disk.raw" bs=440 count=1 conv=notrunc status=none
losetup -d "$loop"; loop=
qemu-img convert -O qcow2 "$w/disk.raw" "$out"
`;

// GNU tar recognises a gzip layer itself when it reads a file: the same command takes the scale run's plain tar.
const FLOOR = `
set -euo pipefail
archive=$1; out=$2; size=$3; w=$(mktemp -d "$4/floor-XXXXXX")
trap 'rm -rf "$w"' EXIT
mkdir "$w/oci" "$w/root"
tar -x -C "$w/oci" -f "$archive"
for l in $(node -e 'const fs=require("fs"),d=process.argv[1];const m=JSON.parse(fs.readFileSync(d+"/index.json")).manifests[0].digest.slice(7);console.log(JSON.parse(fs.readFileSync(d+"/blobs/sha256/"+m)).layers.map(x=>x.digest.slice(7)).join(" "))' "$w/oci"); do
  tar -x --numeric-owner --xattrs --xattrs-include='*' -f "$w/oci/blobs/sha256/$l" -C "$w/root"
done
mke2fs -q -t ext4 -d "$w/root" "$w/root.ext4" "$size"
qemu-img convert -O qcow2 "$w/root.ext4" "$out"
`;

function classic(image, out, sizeBytes) {
  return timed('bash', ['-c', CLASSIC, 'classic', image, out, String(sizeBytes), work, 'boot']);
}
function floor(archive, out, sizeBytes) {
  return timed('bash', ['-c', FLOOR, 'floor', archive, out, String(sizeBytes), work]);
}
function img2vm(source, out, bin = BIN) {
  const r = timed(bin, [source, '-o', out, '--raw', '--boot', 'bios', '--json']);
  return { ...r, json: JSON.parse(r.stdout) };
}

/** The image's gzip layers as files (outside the timing), for the inflate floor. */
function layerFiles(archive) {
  const dir = join(work, 'floor-layers');
  mkdirSync(dir, { recursive: true });
  bash(`tar -x -C ${dir} -f ${archive} ./blobs ./index.json`);
  const blob = (d) => join(dir, 'blobs', 'sha256', d.slice(7));
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  return JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8')).layers.map((l) => blob(l.digest));
}

const NODE_INFLATE = `
const z = require('zlib'), fs = require('fs');
const one = (f) => new Promise((ok, fail) =>
  fs.createReadStream(f, { highWaterMark: 1 << 20 }).pipe(z.createGunzip({ chunkSize: 1 << 20 }))
    .on('data', () => {}).on('end', ok).on('error', fail));
const [mode, ...files] = process.argv.slice(1);
(mode === 'all' ? Promise.all(files.map(one)) : files.reduce((p, f) => p.then(() => one(f)), Promise.resolve()))
  .catch((e) => { console.error(e); process.exit(1); });`;

/** Every layer decompressed to /dev/null: by gzip -dc or Node's zlib (what img2vm uses), one at a time or all at once. */
function inflateFloor(files, tool, all) {
  if (tool === 'node') return timed('node', ['-e', NODE_INFLATE, all ? 'all' : 'one', ...files]);
  return timed('bash', [
    '-c',
    `printf '%s\\n' "$@" | xargs -P ${all ? files.length : 1} -n 1 sh -c 'gzip -dc "$0" >/dev/null'`,
    'inflate',
    ...files,
  ]);
}

/** What the daemon itself takes to hand over the image's files: docker export of a container into /dev/null. */
function daemonFloor(cid) {
  return timed('bash', ['-c', 'docker export "$1" >/dev/null', 'export', cid]);
}

/** path | img2vm | baseline | ratio | goal, best of the runs each. */
function limits(rows) {
  console.log('\npath              img2vm (s)   baseline                                   (s)    ratio   goal');
  for (const [path, mine, name, base, goal] of rows) {
    const m = best(mine).s;
    const b = best(base).s;
    console.log(
      `${path.padEnd(17)} ${m.toFixed(2).padStart(9)}    ${name.padEnd(40)} ${b.toFixed(2).padStart(6)}   ${(m / b).toFixed(2).padStart(5)}   ${goal}`,
    );
  }
}

function best(list) {
  return list.reduce((a, b) => (b.s < a.s ? b : a));
}

function report(title, rows, ratios) {
  console.log(`\n${title}`);
  console.log('path                                   best s   runs (s)                  peak RSS   output on disk');
  for (const [name, runs, file] of rows) {
    const b = best(runs);
    console.log(
      `${name.padEnd(38)} ${b.s.toFixed(2).padStart(6)}   ${runs
        .map((r) => r.s.toFixed(2))
        .join(', ')
        .padEnd(25)} ${(b.rss.toFixed(0) + ' MiB').padStart(8)}   ${mib(onDisk(file))}`,
    );
  }
  for (const [name, a, b] of ratios) console.log(`ratio ${name}: ${(best(a).s / best(b).s).toFixed(2)}`);
}

function stages(j) {
  return Object.entries(j.timings)
    .map(([k, v]) => `${k} ${(v / 1000).toFixed(2)} s`)
    .join(', ');
}

// A labelled block: --only-scale leaves it early and the finally still removes the work directory.
try {
  bench: {
    if (ONLY_SCALE) {
      scale();
      break bench;
    }
    console.log(
      `img2vm assembly benchmark: ${RUNS} interleaved runs each, ${dropCaches.warm ? 'WARM' : 'cold'} page cache`,
    );
    const image = kernelReadyImage();
    const archive = join(work, 'image.oci.tar');
    const nLayers = ociArchiveOf(image, archive);
    const info = JSON.parse(sh('docker', ['image', 'inspect', image]))[0];
    console.log(
      `image ${image}: ${nLayers} layers, ${mib(info.Size)}; OCI archive (gzip layers) ${mib(statSync(archive).size)}`,
    );
    const size = Math.ceil((info.Size * 1.6 + 256 * 1048576) / 1048576) * 1048576;
    const res = { a: [], b: [], c: [], d: [], e: [], g1: [], gN: [], n1: [], nN: [], a0: [], c0: [] };
    const files = layerFiles(archive);
    const cid = sh('docker', ['create', image, '/bin/true']).trim();
    const out = (k) => join(work, `out-${k}.qcow2`);
    for (let i = 0; i < RUNS; i++) {
      for (const k of ['a', 'b', 'c', 'd', 'a0', 'c0']) rmSync(out(k), { force: true });
      // This build and the --before-bin one run next to each other, which goes first alternating: in a fixed order
      // the slot alone moved after/before to 1.31 one way round and 0.66 the other on this machine (issue 20).
      const pair = (k, src) => {
        const runs = [
          () => res[k].push(img2vm(src, out(k))),
          () => res[`${k}0`].push(img2vm(src, out(`${k}0`), BEFORE_BIN)),
        ];
        if (!BEFORE_BIN) runs.pop();
        else if (i % 2 === 1) runs.reverse();
        for (const r of runs) r();
      };
      pair('a', image);
      res.b.push(classic(image, out('b'), size));
      pair('c', `oci-archive:${archive}`);
      res.d.push(floor(archive, out('d'), size));
      res.e.push(daemonFloor(cid));
      res.g1.push(inflateFloor(files, 'gzip', false));
      res.gN.push(inflateFloor(files, 'gzip', true));
      res.n1.push(inflateFloor(files, 'node', false));
      res.nN.push(inflateFloor(files, 'node', true));
    }
    sh('docker', ['rm', cid]);
    if (dropCaches.warm) console.log('(could not drop the page cache: these are warm-cache numbers)');
    report(
      'kernel-ready Debian image',
      [
        ['(a) img2vm, daemon, --raw → qcow2', res.a, out('a')],
        ['(b) classic loop-mount pipeline', res.b, out('b')],
        ['(c) img2vm, OCI archive, --raw → qcow2', res.c, out('c')],
        ['(d) tool floor (untar, mke2fs -d, qemu-img)', res.d, out('d')],
      ],
      [
        ['a/b', res.a, res.b],
        ['c/d', res.c, res.d],
      ],
    );
    // The floors: the fastest way this machine has to do the unavoidable part.
    const inflate1 = best(res.g1).s <= best(res.n1).s ? res.g1 : res.n1;
    const inflateN = best(res.gN).s <= best(res.nN).s ? res.gN : res.nN;
    const tool = (r) => (r === res.g1 || r === res.gN ? 'gzip -dc' : "Node's zlib");
    console.log(
      `inflate floor, best s: gzip -dc one at a time ${best(res.g1).s.toFixed(2)}, all at once ${best(res.gN).s.toFixed(2)}; Node's zlib one at a time ${best(res.n1).s.toFixed(2)}, all at once ${best(res.nN).s.toFixed(2)}`,
    );
    limits([
      ['daemon', res.a, 'classic loop-mount pipeline', res.b, '<= 0.6'],
      ['daemon', res.a, 'daemon floor: docker export > /dev/null', res.e, '<= 1.2'],
      ['OCI archive', res.c, 'tool floor: untar, mke2fs -d, qemu-img', res.d, '<= 0.35'],
      ['OCI archive', res.c, `inflate floor, all cores (${tool(inflateN)})`, inflateN, '<= 1.5'],
      ['OCI archive', res.c, `inflate floor, one core (${tool(inflate1)})`, inflate1, ''],
    ]);
    if (BEFORE_BIN)
      limits([
        ['daemon', res.a, `before: ${BEFORE_BIN}`, res.a0, 'after/before'],
        ['OCI archive', res.c, `before: ${BEFORE_BIN}`, res.c0, 'after/before'],
      ]);
    if (BEFORE_BIN)
      for (const [path, k] of [
        ['daemon', 'a'],
        ['OCI archive', 'c'],
      ])
        console.log(
          `${path} pairs, after/before s: ${res[k].map((r, i) => `${r.s.toFixed(2)}/${res[`${k}0`][i].s.toFixed(2)}`).join(', ')}`,
        );
    console.log(
      `peak RSS: img2vm daemon ${best(res.a).rss.toFixed(0)} MiB, OCI archive ${best(res.c).rss.toFixed(0)} MiB (goal <= 300)`,
    );
    console.log(`where img2vm's time went (best (a)): ${stages(best(res.a).json)}`);
    console.log(`where img2vm's time went (best (c)): ${stages(best(res.c).json)}`);
    if (!SKIP_SCALE) scale();
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

// ---- scale: 100,000 files and one file over 1 GiB, about 2 GB ----
function scale() {
  const layer = join(work, 'scale-layer.tar');
  writeSyntheticLayer(layer, FILES, BIG_MIB);
  const archive = join(work, 'scale.oci.tar');
  const dir = join(work, 'scale-oci');
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const sha = (f) => sh('sha256sum', [f]).split(' ')[0];
  const ld = sha(layer);
  bash(`mv ${layer} ${dir}/blobs/sha256/${ld}`);
  const cfg = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${ld}`] },
    }),
  );
  const cd = createHash('sha256').update(cfg).digest('hex');
  writeFileSync(join(dir, 'blobs', 'sha256', cd), cfg);
  const lsize = statSync(join(dir, 'blobs', 'sha256', ld)).size;
  const m = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${cd}`, size: cfg.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${ld}`, size: lsize }],
    }),
  );
  const md = createHash('sha256').update(m).digest('hex');
  writeFileSync(join(dir, 'blobs', 'sha256', md), m);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${md}`,
          size: m.length,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
  bash(`tar -C ${dir} -cf ${archive} .`);
  // The same image in the daemon for the classic pipeline (docker load takes a docker-archive).
  const da = join(work, 'scale-docker');
  mkdirSync(da);
  bash(`ln ${dir}/blobs/sha256/${ld} ${da}/layer.tar && cp ${dir}/blobs/sha256/${cd} ${da}/${cd}.json`);
  writeFileSync(
    join(da, 'manifest.json'),
    JSON.stringify([{ Config: `${cd}.json`, RepoTags: ['img2vm-bench-scale:latest'], Layers: ['layer.tar'] }]),
  );
  bash(`tar -C ${da} -c . | docker load -q >/dev/null`);
  rmSync(dir, { recursive: true, force: true });
  rmSync(da, { recursive: true, force: true });
  const size = Math.ceil((lsize * 1.4 + 512 * 1048576) / 1048576) * 1048576;
  const o = (k) => join(work, `scale-${k}.qcow2`);
  // Interleaved like the main runs (--scale-runs N, default 1), best of them each: one run on a shared machine is noise.
  const r = { c: [], c0: [], a: [], b: [], d: [], e: [] };
  // The limits at this size too: what docker export alone takes, and the tool floor for the archive.
  const cid = sh('docker', ['create', 'img2vm-bench-scale:latest', '/bin/true']).trim();
  try {
    for (let i = 0; i < SCALE_RUNS; i++) {
      r.c.push(img2vm(`oci-archive:${archive}`, o('c')));
      rmSync(o('c'), { force: true });
      r.d.push(floor(archive, o('d'), size));
      rmSync(o('d'), { force: true });
      r.e.push(daemonFloor(cid));
      if (BEFORE_BIN) r.c0.push(img2vm(`oci-archive:${archive}`, o('c0'), BEFORE_BIN));
      rmSync(o('c0'), { force: true });
      r.a.push(img2vm('img2vm-bench-scale:latest', o('a')));
      rmSync(o('a'), { force: true });
      // The synthetic image has no kernel to install a boot loader for: the classic pipeline skips extlinux here.
      r.b.push(
        process.argv.includes('--no-classic')
          ? { s: NaN, rss: NaN }
          : timed('bash', [
              '-c',
              CLASSIC,
              'classic',
              'img2vm-bench-scale:latest',
              o('b'),
              String(size),
              work,
              'noboot',
            ]),
      );
      rmSync(o('b'), { force: true });
    }
  } finally {
    sh('docker', ['rm', cid]);
  }
  const runs = (l) => (l.length > 1 ? ` (runs: ${l.map((x) => x.s.toFixed(1)).join(', ')})` : '');
  const [c, a, b, d, e] = [best(r.c), best(r.a), best(r.b), best(r.d), best(r.e)];
  const c0 = BEFORE_BIN ? best(r.c0) : undefined;
  console.log(`\nscale run: ${FILES} files + one ${BIG_MIB} MiB file, layer ${mib(lsize)}, best of ${SCALE_RUNS}`);
  console.log(
    `img2vm, OCI archive: ${c.s.toFixed(1)} s, peak RSS ${c.rss.toFixed(0)} MiB (${stages(c.json)})${runs(r.c)}`,
  );
  if (c0)
    console.log(
      `before (${BEFORE_BIN}), OCI archive: ${c0.s.toFixed(1)} s, peak RSS ${c0.rss.toFixed(0)} MiB (${stages(c0.json)})${runs(r.c0)}`,
    );
  console.log(
    `img2vm, daemon:      ${a.s.toFixed(1)} s, peak RSS ${a.rss.toFixed(0)} MiB (${stages(a.json)})${runs(r.a)}`,
  );
  console.log(`classic pipeline:    ${b.s.toFixed(1)} s, peak RSS ${b.rss.toFixed(0)} MiB${runs(r.b)}`);
  console.log(`tool floor (untar, mke2fs -d, qemu-img): ${d.s.toFixed(1)} s${runs(r.d)}`);
  console.log(`daemon floor (docker export > /dev/null): ${e.s.toFixed(1)} s${runs(r.e)}`);
  console.log(`ratio img2vm (daemon) / classic: ${(a.s / b.s).toFixed(2)} (goal <= 0.5)`);
  console.log(
    `ratio img2vm (daemon) / daemon floor: ${(a.s / e.s).toFixed(2)} (goal <= 1.2 where the export makes 0.5 impossible)`,
  );
  console.log(`ratio img2vm (OCI archive) / tool floor: ${(c.s / d.s).toFixed(2)} (goal <= 0.35)`);
  sh('docker', ['rmi', '-f', 'img2vm-bench-scale:latest']);
}

/** A plain tar layer: FILES small files (4-12 KiB, in 100 directories) and one file of bigMib of incompressible data. */
function writeSyntheticLayer(path, files, bigMib) {
  const fd = openSync(path, 'w');
  const header = (name, size, type = '0', mode = 0o644) => {
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, 'utf8');
    h.write(`${mode.toString(8).padStart(7, '0')}\0`, 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
    h.write(`${(1700000000).toString(8).padStart(11, '0')}\0`, 136);
    h.write('        ', 148);
    h.write(type, 156);
    h.write('ustar\x0000', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    writeSync(fd, h);
  };
  const pad = (n) => {
    if (n % 512) writeSync(fd, Buffer.alloc(512 - (n % 512)));
  };
  const seed = Buffer.alloc(1 << 20);
  for (let i = 0; i < seed.length; i += 64) createHash('sha512').update(`${i}`).digest().copy(seed, i);
  for (let d = 0; d < 100; d++) header(`d${d}/`, 0, '5', 0o755);
  // A kernel to find in /boot (--raw needs one; nothing boots this disk).
  header('boot/', 0, '5', 0o755);
  header('boot/vmlinuz-0.0.0', 4096);
  writeSync(fd, seed, 0, 4096);
  for (let i = 0; i < files; i++) {
    const size = 4096 + ((i * 7919) % 8192);
    header(`d${i % 100}/f${i}`, size);
    writeSync(fd, seed, (i * 64) % (seed.length - size), size);
    pad(size);
  }
  header('big', bigMib * 1048576);
  for (let i = 0; i < bigMib; i++) {
    seed[i % seed.length] ^= 0xff; // each MiB differs a little, so nothing deduplicates or compresses it away
    writeSync(fd, seed);
  }
  writeSync(fd, Buffer.alloc(1024));
  closeSync(fd);
}
