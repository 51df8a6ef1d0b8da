// Benchmark (issue 18): the same image converted for amd64 and for arm64 in one run (nothing is emulated on the
// own-init path, so the ratio should be about 1), and the time from `img2vm run` to the workload's first output:
// the amd64 disk (KVM when it works, else TCG) beside the arm64 one (always TCG on an amd64 host).
// The image: a two-platform OCI index of busybox userlands (the host's busybox-static, Debian's arm64 one).
// Usage (after the set-up): node bench/arch.mjs [--rounds N]
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');
const BIN = join(REPO, 'bin', 'img2vm');
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 3;
const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-arch-'));
const env = { ...process.env, CI: 'true', DOCKER_HOST: 'unix:///nonexistent/docker.sock' };
const FIXTURES =
  process.env.IMG2VM_FIXTURE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'img2vm-fixtures');

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, env, ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}\n${r.stdout}`.slice(0, 3000));
  return r.stdout;
}

/** Debian's arm64 busybox, as the arm64 boot test caches it (fetched here through the same verified client). */
async function arm64Busybox() {
  const cached = join(FIXTURES, 'debian-packages', 'busybox-static_arm64_bookworm', 'busybox');
  if (existsSync(cached)) return cached;
  const { resolveDebianPackage, downloadVerified, unpackDebDir } = await import(join(REPO, 'dist/kernel/grub.js'));
  const r = await resolveDebianPackage({ name: 'busybox-static', arch: 'arm64', suite: 'bookworm', work });
  await downloadVerified(r, join(work, 'bb.deb'));
  mkdirSync(join(cached, '..'), { recursive: true });
  await unpackDebDir(join(work, 'bb.deb'), 'bin/', join(cached, '..'));
  return cached;
}

const blob = (dir, bytes) => {
  const digest = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(dir, 'blobs', 'sha256', digest), bytes);
  return { digest: `sha256:${digest}`, size: bytes.length };
};

/** An OCI layout with one index: the same userland and CMD for each architecture, only busybox differs. */
function writeLayout(dir, busyboxes) {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const manifests = Object.entries(busyboxes).map(([architecture, busybox]) => {
    const root = join(work, `root-${architecture}`);
    mkdirSync(join(root, 'bin'), { recursive: true });
    copyFileSync(busybox, join(root, 'bin', 'busybox'));
    for (const a of ['sh', 'echo']) symlinkSync('busybox', join(root, 'bin', a));
    sh('chmod', ['755', join(root, 'bin', 'busybox')]);
    sh('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', join(work, `${architecture}.tar`), '.']);
    const layerBytes = readFileSync(join(work, `${architecture}.tar`));
    const layer = blob(dir, layerBytes);
    const config = blob(
      dir,
      JSON.stringify({
        architecture,
        os: 'linux',
        config: { Cmd: ['/bin/sh', '-c', 'echo first output; exit 0'] },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    );
    const m = blob(
      dir,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    );
    return { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, platform: { os: 'linux', architecture } };
  });
  const index = blob(
    dir,
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }),
  );
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          ...index,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
}

function convert(layout, arch, out, extra = []) {
  const t0 = performance.now();
  sh(BIN, [`oci:${layout}`, '--platform', `linux/${arch}`, '--init', 'img2vm', '-o', out, ...extra]);
  return (performance.now() - t0) / 1000;
}

/** Seconds from starting `img2vm run` to the first byte of the workload's output, and the whole run. */
function firstOutput(disk) {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const p = spawn(BIN, ['run', disk, '--timeout', '900'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let first;
    let err = '';
    p.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
    p.stdout.on('data', () => (first ??= (performance.now() - t0) / 1000));
    p.on('close', (code) =>
      first !== undefined
        ? res({ first, total: (performance.now() - t0) / 1000, code })
        : rej(new Error(`no output from ${disk} (exit ${code}):\n${err}`)),
    );
  });
}

const best = (xs) => Math.min(...xs);
try {
  const layout = join(work, 'layout');
  writeLayout(layout, { amd64: '/bin/busybox', arm64: await arm64Busybox() });
  // Warm-up: both kernels and GRUB's arm64 modules into the cache, so the rounds compare conversions only.
  convert(layout, 'amd64', join(work, 'a.qcow2'));
  convert(layout, 'arm64', join(work, 'r.qcow2'));
  const t = { amd64: [], amd64uefi: [], arm64: [] };
  for (let i = 0; i < rounds; i++) {
    t.amd64.push(convert(layout, 'amd64', join(work, 'a.qcow2')));
    t.amd64uefi.push(convert(layout, 'amd64', join(work, 'u.qcow2'), ['--boot', 'uefi']));
    t.arm64.push(convert(layout, 'arm64', join(work, 'r.qcow2')));
  }
  console.log(`busybox index → qcow2 with --init img2vm, cached kernels, best of ${rounds} interleaved:`);
  console.log(`  amd64 (hybrid: GRUB BIOS + EFI)  ${best(t.amd64).toFixed(2)} s`);
  console.log(`  amd64 --boot uefi                 ${best(t.amd64uefi).toFixed(2)} s`);
  console.log(`  arm64 (UEFI, GRUB arm64-efi)      ${best(t.arm64).toFixed(2)} s`);
  console.log(
    `  ratio arm64/amd64: ${(best(t.arm64) / best(t.amd64)).toFixed(2)} (hybrid), ${(best(t.arm64) / best(t.amd64uefi)).toFixed(2)} (uefi)`,
  );
  const a = await firstOutput(join(work, 'a.qcow2'));
  const u = await firstOutput(join(work, 'u.qcow2'));
  const r = await firstOutput(join(work, 'r.qcow2'));
  console.log("img2vm run to the workload's first output (and to its exit):");
  console.log(`  amd64 BIOS (SeaBIOS)   ${a.first.toFixed(1)} s (${a.total.toFixed(1)} s)`);
  console.log(`  amd64 UEFI (OVMF)      ${u.first.toFixed(1)} s (${u.total.toFixed(1)} s)`);
  console.log(`  arm64 UEFI (AAVMF, TCG) ${r.first.toFixed(1)} s (${r.total.toFixed(1)} s)`);
  console.log(`  ratio arm64/amd64 UEFI: ${(r.first / u.first).toFixed(2)}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
