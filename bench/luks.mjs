// Benchmark: converting the demo image with and without a LUKS2 root, in the same run, rounds interleaved.
// Usage (after the set-up: the demo image in the daemon, `npm run build`):
//   node bench/luks.mjs [--rounds N] [--image IMG] [--init distro|image] [--format raw|qcow2]
// Each variant is converted once untimed first (the guest build and the kernel land in their caches), then N rounds
// of both. Prints per round the wall time of the whole conversion and of the stages the encryption is in (rootfs:
// file data encrypted as written; disk: metadata, the never-written sectors as encrypted zeros, the headers), the
// output's bytes on disk, and the ratio LUKS/plain (lower is better). The LUKS variant uses a master-key file so
// both variants differ only in the encryption (the keyslot's 600,000 PBKDF2 iterations are in its disk time).
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

const dir = mkdtempSync(join(tmpdir(), 'img2vm-bench-luks-'));
writeFileSync(join(dir, 'master.key'), randomBytes(64));
const variants = {
  plain: ['--boot-partition', '512M'],
  luks: ['--luks-password', 'bench passphrase', '--luks-master-key-file', join(dir, 'master.key')],
};

function convert(name) {
  const out = join(dir, `${name}.${format}`);
  const r = spawnSync(BIN, [image, '--init', init, '--seed', 'bench', '-o', out, '--json', ...variants[name]], {
    encoding: 'utf8',
    env: { ...process.env, CI: 'true', SOURCE_DATE_EPOCH: '1700000000' },
  });
  if (r.status !== 0) throw new Error(`${name}: img2vm exited ${r.status}\n${r.stderr}`);
  const j = JSON.parse(r.stdout);
  rmSync(out, { force: true });
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
} finally {
  rmSync(dir, { recursive: true, force: true });
}
