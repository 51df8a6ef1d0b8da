// Benchmark: converting the demo image with and without a LUKS2 root, in the same run, rounds interleaved.
// Usage (after the set-up: the demo image in the daemon, `npm run build`):
//   node bench/luks.mjs [--rounds N] [--image IMG] [--init distro|image|img2vm] [--format raw|qcow2] [--boot]
// Each variant is converted once untimed first (the guest build and the kernel land in their caches), then N rounds
// of both. Prints per round the wall time of the whole conversion and of the stages the encryption is in (rootfs:
// file data encrypted as written; disk: metadata, the never-written sectors as encrypted zeros, the headers), the
// output's bytes on disk, and the ratio LUKS/plain (lower is better). The LUKS variant uses a master-key file so
// both variants differ only in the encryption (the keyslot's 600,000 PBKDF2 iterations are in its disk time).
// --boot (with --init img2vm): also boots the LUKS disk once under QEMU (img2vm test types the passphrase) and
// reports how long img2vm's init took to unlock it (PBKDF2-SHA256 600,000 iterations, AF merge, digest), against
// the same PBKDF2 run by the same C code on the host in this run: the ratio is the guest's slowdown (TCG here).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const arg = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const BIN = fileURLToPath(new URL('../bin/img2vm', import.meta.url));
const rounds = Number(arg('--rounds', '3'));
const image = arg('--image', 'img2vm-demo:bookworm');
const init = arg('--init', 'distro');
const format = arg('--format', 'qcow2');
const boot = args.includes('--boot');
if (boot && init !== 'img2vm') throw new Error("--boot measures the unlock by img2vm's init: give --init img2vm");

const dir = mkdtempSync(join(tmpdir(), 'img2vm-bench-luks-'));
writeFileSync(join(dir, 'master.key'), randomBytes(64));
const variants = {
  plain: ['--boot-partition', '512M'],
  luks: ['--luks-password', 'bench passphrase', '--luks-master-key-file', join(dir, 'master.key')],
};

function convert(name, keep = false) {
  const out = join(dir, `${name}.${format}`);
  const r = spawnSync(BIN, [image, '--init', init, '--seed', 'bench', '-o', out, '--json', ...variants[name]], {
    encoding: 'utf8',
    env: { ...process.env, CI: 'true', SOURCE_DATE_EPOCH: '1700000000' },
  });
  if (r.status !== 0) throw new Error(`${name}: img2vm exited ${r.status}\n${r.stderr}`);
  const j = JSON.parse(r.stdout);
  if (!keep) rmSync(out, { force: true });
  return {
    total: j.timings.total / 1000,
    rootfs: (j.timings.rootfs ?? 0) / 1000,
    disk: (j.timings.disk ?? 0) / 1000,
    fileMiB: j.fileSize / 2 ** 20,
    fsMiB: j.rootfs.fsSize / 2 ** 20,
  };
}

try {
  for (const v of Object.keys(variants)) convert(v);
  const rows = [];
  for (let i = 0; i < rounds; i++)
    for (const v of Object.keys(variants)) rows.push({ round: i + 1, variant: v, ...convert(v) });
  console.log(`${image}, --init ${init}, ${format}; root file system ${rows[0].fsMiB.toFixed(0)} MiB`);
  console.log('round variant   total s  rootfs s  disk s  on disk MiB');
  for (const r of rows)
    console.log(
      `${String(r.round).padStart(5)} ${r.variant.padEnd(8)} ${r.total.toFixed(1).padStart(8)} ${r.rootfs.toFixed(1).padStart(9)} ${r.disk.toFixed(1).padStart(7)} ${r.fileMiB.toFixed(0).padStart(12)}`,
    );
  for (let i = 1; i <= rounds; i++) {
    const [p, l] = ['plain', 'luks'].map((v) => rows.find((r) => r.round === i && r.variant === v));
    console.log(
      `round ${i}: LUKS/plain total ${(l.total / p.total).toFixed(2)}, rootfs+disk ${((l.rootfs + l.disk) / (p.rootfs + p.disk)).toFixed(2)}`,
    );
  }
  if (boot) bootUnlock();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** The guest's unlock time (the init's own line) and the host's time for the same PBKDF2 with native/init. */
function bootUnlock() {
  convert('luks', true);
  const disk = join(dir, `luks.${format}`);
  const expect = 'LUKS2 volume \\S+ unlocked with keyslot \\d+ in';
  const t = spawnSync(BIN, ['test', disk, '--luks-password', 'bench passphrase', '--expect', expect, '--verbose'], {
    encoding: 'utf8',
    env: { ...process.env, CI: 'true' },
  });
  const guest = /LUKS2 volume \S+ unlocked with keyslot \d+ in ([\d.]+) s/.exec(t.stderr ?? '');
  if (t.status !== 0 || !guest) throw new Error(`boot: img2vm test exited ${t.status}\n${t.stderr}`);
  const init = fileURLToPath(new URL('../native/init', import.meta.url));
  const hex = (s) => Buffer.from(s).toString('hex');
  const t0 = performance.now();
  const h = spawnSync(init, [
    '--pbkdf2-sha256',
    hex('bench passphrase'),
    hex('32 bytes of salt, as a keyslot.'),
    '600000',
    '64',
  ]);
  if (h.status !== 0) throw new Error(`native/init --pbkdf2-sha256 exited ${h.status}`);
  const host = (performance.now() - t0) / 1000;
  console.log(
    `unlock by img2vm's init: guest ${Number(guest[1]).toFixed(1)} s, the same PBKDF2 on the host ${host.toFixed(2)} s: guest/host ${(Number(guest[1]) / host).toFixed(1)}`,
  );
}
