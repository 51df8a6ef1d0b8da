// Benchmark (issue 21): `img2vm run IMAGE echo hi` cold (the image new to the store) and warm, time to first output
// and to exit, beside `docker run --rm IMAGE echo hi` in the same run as the anchor; and a volume's write and read
// throughput in the guest beside the host's on the same directory, with the start-up a volume adds.
// Usage (as root, after the set-up, dockerd running): node bench/run.mjs [rounds, default 3]
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');
const BIN = join(REPO, 'bin', 'img2vm');
const rounds = Number(process.argv[2] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-run-'));
const env = { ...process.env, CI: 'true' };
const TAG = `img2vm-bench-run:${randomBytes(4).toString('hex')}`;

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, env, ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}\n${r.stdout}`.slice(0, 3000));
  return r.stdout;
}

/** Seconds to the first byte on stdout and to exit; the output. */
function timed(cmd, args) {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let first;
    let out = '';
    let err = '';
    p.stderr.on('data', (d) => (err = (err + d).slice(-3000)));
    p.stdout.on('data', (d) => {
      first ??= (performance.now() - t0) / 1000;
      out += d;
    });
    p.on('close', (code) =>
      code === 0 && first !== undefined
        ? res({ first, exit: (performance.now() - t0) / 1000, out })
        : rej(new Error(`${cmd} ${args.join(' ')} (exit ${code}):\n${out}\n${err}`)),
    );
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f1 = (n) => n.toFixed(1);

/** A busybox root file system as one tar, imported into the daemon: the same image for docker and for img2vm. */
function makeImage() {
  const root = join(work, 'root');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'tmp'));
  writeFileSync(join(root, 'bin', 'busybox'), readFileSync('/bin/busybox'), { mode: 0o755 });
  for (const a of ['sh', 'echo', 'dd', 'rm']) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'etc', 'tag'), TAG); // new to img2vm's store: the first run converts
  sh('tar', ['-C', root, '-cf', join(work, 'root.tar'), '.']);
  sh('docker', ['import', '--change', 'ENV PATH=/bin', '--change', 'CMD ["sh"]', join(work, 'root.tar'), TAG]);
}

/**
 * Writing then reading 64 MiB in DIR, each timed by busybox sh's `time` (10 ms steps), the read past the page cache:
 * the guest drops its caches (only its own), the host reads with O_DIRECT rather than drop a shared machine's cache.
 */
const GUEST_IO = [
  'time dd if=/dev/zero of="$1/bench.bin" bs=1M count=64 conv=fsync 2>&1;',
  'echo 3 > /proc/sys/vm/drop_caches; time dd if="$1/bench.bin" of=/dev/null bs=1M 2>&1; rm -f "$1/bench.bin"',
].join(' ');
const HOST_IO = GUEST_IO.replace('echo 3 > /proc/sys/vm/drop_caches;', '').replace(
  'bs=1M 2>&1',
  'bs=1M iflag=direct 2>&1',
);

/** MB/s (10^6 bytes) of the two timed dd runs in out. */
function mbps(out) {
  const s = [...out.matchAll(/real\s+(\d+)m ([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  if (s.length !== 2) throw new Error(`no timings in:\n${out}`);
  return { write: Math.round(67.108864 / Math.max(s[0], 0.01)), read: Math.round(67.108864 / Math.max(s[1], 0.01)) };
}

/** Seconds from starting virtiofsd on dir to its "waiting for a connection" line. */
function virtiofsdStart(dir) {
  return new Promise((res, rej) => {
    const sock = join(work, `bench-${Date.now()}.sock`);
    const t0 = performance.now();
    const p = spawn(
      '/usr/lib/qemu/virtiofsd',
      [`--socket-path=${sock}`, '-o', `source=${dir}`, '-o', 'sandbox=namespace'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
      if (/Waiting for vhost-user socket connection/.test(err)) {
        res((performance.now() - t0) / 1000);
        p.kill('SIGKILL');
      }
    });
    p.on('close', (code) => rej(new Error(`virtiofsd exited (${code}) before listening:\n${err}`)));
  });
}

try {
  sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);
  makeImage();
  const ref = `docker-daemon:${TAG}`;
  const cold = await timed(BIN, ['run', ref, 'echo', 'hi']);
  const warm = [];
  const docker = [];
  for (let i = 0; i < rounds; i++) {
    warm.push(await timed(BIN, ['run', ref, 'echo', 'hi']));
    docker.push(await timed('docker', ['run', '--rm', '--network', 'none', TAG, 'echo', 'hi']));
  }
  const vol = join(work, 'vol');
  mkdirSync(vol);
  const withVol = await timed(BIN, ['run', '-v', `${vol}:/data`, ref, 'sh', '-c', GUEST_IO, 'sh', '/data']);
  // What a volume adds before the boot: QEMU's virtiofsd from start to listening on its socket.
  const vfs = [];
  for (let i = 0; i < rounds; i++) vfs.push(await virtiofsdStart(vol));
  const host = mbps(
    sh('busybox', ['sh', '-c', `{ ${HOST_IO}; } 2>&1`, 'sh', vol], { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  const guest = mbps(withVol.out);
  const dFirst = median(docker.map((d) => d.first));
  const dExit = median(docker.map((d) => d.exit));
  const row = (name, first, exit) =>
    `| ${name} | ${f1(first)} s | ${f1(exit)} s | ${f1(first / dFirst)}× | ${f1(exit / dExit)}× |`;
  console.log(
    `img2vm run IMAGE echo hi under ${process.env.IMG2VM_ACCEL ?? 'the chosen accelerator'}, median of ${rounds}\n`,
  );
  console.log('| run | first output | exit | first output / docker | exit / docker |');
  console.log('|---|---|---|---|---|');
  console.log(row('img2vm, cold (converts)', cold.first, cold.exit));
  console.log(row('img2vm, warm (from the store)', median(warm.map((w) => w.first)), median(warm.map((w) => w.exit))));
  console.log(row('img2vm, warm, one -v volume', withVol.first, withVol.exit));
  console.log(row('docker run --rm', dFirst, dExit));
  console.log(
    `\nwarm runs: ${warm.map((w) => f1(w.exit)).join(', ')} s; docker: ${docker.map((d) => f1(d.exit)).join(', ')} s`,
  );
  console.log(`\nvirtiofsd start to listening: ${vfs.map((t) => `${(t * 1000).toFixed(0)} ms`).join(', ')}`);
  console.log('\n| 64 MiB in the volume | write | read (cache dropped) |');
  console.log('|---|---|---|');
  console.log(`| guest, virtio-fs | ${guest.write} MB/s | ${guest.read} MB/s |`);
  console.log(`| host, same directory | ${host.write} MB/s | ${host.read} MB/s |`);
  console.log(`| guest / host | ${(guest.write / host.write).toFixed(2)} | ${(guest.read / host.read).toFixed(2)} |`);
} finally {
  spawnSync('docker', ['rmi', '-f', TAG], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
}
