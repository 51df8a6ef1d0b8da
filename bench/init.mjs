// Benchmark (issue 10): converting the Debian demo image with img2vm's own kernel and init (--init img2vm) beside the
// distribution template path (--init distro), cold and cached, in one run; and the time from `img2vm run` to the
// first output of a scratch image's workload, through GRUB (qcow2) and direct-kernel (--format rootfs).
// Usage (as root, after the set-up): node bench/init.mjs [--only-run]   (--only-run: just the first-output times)
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');
const BIN = join(REPO, 'bin', 'img2vm');
const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-init-'));
const env = { ...process.env, CI: 'true' };

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, env, ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}\n${r.stdout}`.slice(0, 3000));
  return r.stdout;
}

function convert(args, cache) {
  const t0 = performance.now();
  const out = sh(BIN, [...args, '--json'], { env: { ...env, XDG_CACHE_HOME: cache } });
  return { s: (performance.now() - t0) / 1000, json: JSON.parse(out) };
}

/** Seconds from starting `img2vm run` to the first byte of the workload's output on its stdout. */
function firstOutput(disk) {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const p = spawn(BIN, ['run', disk, '--timeout', '300'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let first;
    let err = '';
    p.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
    p.stdout.on('data', () => {
      first ??= (performance.now() - t0) / 1000;
    });
    // 'close', not 'exit': the output can arrive after the process has exited.
    p.on('close', (code) =>
      first !== undefined ? res({ s: first, code }) : rej(new Error(`no output from ${disk} (exit ${code}):\n${err}`)),
    );
  });
}

try {
  sh('bash', [join(REPO, 'fixtures', 'debian-image.sh'), 'img2vm-demo:bookworm', 'bookworm']);
  const cold = join(work, 'cache-cold');
  // --init img2vm, cold: the kernel is fetched and verified; cached: it comes from img2vm's cache.
  if (!process.argv.includes('--only-run')) {
    const i1 = convert(['img2vm-demo:bookworm', '-o', join(work, 'i.qcow2'), '--init', 'img2vm'], cold);
    const i2 = convert(['img2vm-demo:bookworm', '-o', join(work, 'i.qcow2'), '--init', 'img2vm'], cold);
    // --init distro, cold: the template build runs (its cached image is removed first); cached: it is reused.
    const probe = convert(['img2vm-demo:bookworm', '-o', join(work, 'd.qcow2'), '--init', 'distro'], cold);
    spawnSync('docker', ['rmi', '-f', probe.json.guestImage]);
    const d1 = convert(['img2vm-demo:bookworm', '-o', join(work, 'd.qcow2'), '--init', 'distro'], cold);
    const d2 = convert(['img2vm-demo:bookworm', '-o', join(work, 'd.qcow2'), '--init', 'distro'], cold);
    const g = (r) => `${r.s.toFixed(1)} s (guest ${(r.json.timings.guest / 1000).toFixed(1)} s)`;
    console.log('Debian demo image (debootstrap bookworm minbase) → hybrid qcow2, same run:');
    console.log(`  --init img2vm   cold ${g(i1)}   cached ${g(i2)}`);
    console.log(`  --init distro   cold ${g(d1)}   cached ${g(d2)}`);
    console.log(`  ratio img2vm/distro: cold ${(i1.s / d1.s).toFixed(2)}, cached ${(i2.s / d2.s).toFixed(2)}`);
  }
  // A scratch image: one static program that prints and exits.
  writeFileSync(
    join(work, 'hello.c'),
    '#include <stdio.h>\nint main(int c, char **v) { printf("hello from %s\\n", v[0]); return 0; }\n',
  );
  sh('musl-gcc', ['-static', '-Os', '-o', join(work, 'hello'), join(work, 'hello.c')]);
  chmodSync(join(work, 'hello'), 0o755);
  writeFileSync(join(work, 'Dockerfile'), 'FROM scratch\nCOPY hello /hello\nCMD ["/hello"]\n');
  sh('docker', ['build', '--network', 'host', '-q', '-t', 'img2vm-bench-scratch:latest', work]);
  const q = convert(['img2vm-bench-scratch:latest', '-o', join(work, 's.qcow2')], cold);
  convert(['img2vm-bench-scratch:latest', '-o', join(work, 's.ext4')], cold);
  const fq = [];
  const fr = [];
  for (let i = 0; i < 3; i++) {
    fq.push((await firstOutput(join(work, 's.qcow2'))).s);
    fr.push((await firstOutput(join(work, 's.firecracker.json'))).s);
  }
  const best = (xs) => Math.min(...xs).toFixed(1);
  console.log(
    `scratch image (${(q.json.fileSize / 1048576).toFixed(1)} MiB on disk as qcow2, ${(q.json.diskSize / 1048576).toFixed(0)} MiB virtual):`,
  );
  console.log(
    `  img2vm run → first workload output, TCG: qcow2 through GRUB ${best(fq)} s (${fq.map((x) => x.toFixed(1)).join(', ')}); rootfs, direct kernel ${best(fr)} s (${fr.map((x) => x.toFixed(1)).join(', ')})`,
  );
  spawnSync('docker', ['rmi', '-f', 'img2vm-bench-scratch:latest']);
} finally {
  rmSync(work, { recursive: true, force: true });
}
