// Benchmark (issue 19): the CI job on a fresh runner, in img2vm's container image with every privilege dropped —
// pull the image from a registry, fetch and verify the kernel, convert, smoke-test under TCG — from an empty cache,
// and then the same job on another empty cache with --cache-from hitting the disk the first one pushed.
// The disk gets a root password, so its smoke test passes on the console's login prompt.
// Usage (as root, after the set-up): node bench/ci-job.mjs [IMAGE]   (default: the demo image img2vm-demo:bookworm)
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '..');
const source = process.argv[2] ?? 'img2vm-demo:bookworm';
const work = mkdtempSync(join(tmpdir(), 'img2vm-bench-ci-'));
// The job's restrictions; the network is the host's, as a runner's is (the registry and the Debian archive).
const LOCKED = ['--user', '1000:1000', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--read-only'];
// A host whose TLS is intercepted (NODE_EXTRA_CA_CERTS names the proxy's CA) hands the job the same CA file.
const CA = process.env.NODE_EXTRA_CA_CERTS
  ? [
      '-v',
      `${process.env.NODE_EXTRA_CA_CERTS}:/etc/img2vm-extra-ca.crt:ro`,
      '-e',
      'NODE_EXTRA_CA_CERTS=/etc/img2vm-extra-ca.crt',
    ]
  : [];

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}\n${r.stdout}`.slice(0, 4000));
  return r.stdout;
}

const freePort = () =>
  new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });

async function startRegistry() {
  const port = await freePort();
  const dir = join(work, 'registry');
  mkdirSync(join(dir, 'data'), { recursive: true });
  writeFileSync(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`,
  );
  const p = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => undefined);
    if (r?.ok) return { host: `127.0.0.1:${port}`, p };
    await new Promise((r2) => setTimeout(r2, 100));
  }
  throw new Error('docker-registry did not start');
}

/** One step of the job in a fresh container: an empty /cache volume of its own, /work mounted. */
function step(name, args) {
  const t0 = performance.now();
  const out = sh('docker', [
    'run',
    '--rm',
    ...LOCKED,
    '--tmpfs',
    '/tmp',
    '--network',
    'host',
    ...CA,
    '-v',
    `${work}/job:/work`,
    'img2vm:latest',
    ...args,
  ]);
  return { name, s: (performance.now() - t0) / 1000, out };
}

const fmt = (s) => `${s.toFixed(1)} s`;

sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);
sh('bash', [join(REPO, 'scripts', 'build-image.sh')]);
if (spawnSync('docker', ['image', 'inspect', source]).status !== 0 && source === 'img2vm-demo:bookworm')
  sh('bash', [join(REPO, 'fixtures', 'debian-image.sh'), source, 'bookworm']);
const { host, p: registry } = await startRegistry();
try {
  const ref = `${host}/bench/app:1`;
  sh('skopeo', ['copy', '-q', '--dest-tls-verify=false', `docker-daemon:${source}`, `docker://${ref}`]);
  mkdirSync(join(work, 'job'));
  chownSync(join(work, 'job'), 1000, 1000);
  const cache = `${host}/bench/img2vm-cache`;
  const convert = (extra) =>
    step('convert', [
      `docker://${ref}`,
      '-o',
      '/work/disk.qcow2',
      '--seed',
      'bench',
      '--password',
      'bench',
      '--json',
      ...extra,
    ]);
  const size = Number(sh('docker', ['image', 'inspect', '-f', '{{.Size}}', 'img2vm:latest']).trim());
  console.log(`img2vm:latest: ${(size / 1e6).toFixed(0)} MB; image ${source} from ${ref}`);

  const rows = [];
  for (const [label, extra] of [
    ['cold (empty cache, --cache-to)', ['--cache-to', cache]],
    ['second runner (empty cache, --cache-from hits)', ['--cache-from', cache]],
  ]) {
    rmSync(join(work, 'job', 'disk.qcow2'), { force: true });
    const c = convert(extra);
    const j = JSON.parse(c.out);
    const t = step('test', ['test', '/work/disk.qcow2', '--timeout', '900']);
    rows.push({ label, convert: c.s, test: t.s, timings: j.timings, disk: j.disk });
    console.log(`${label}: convert ${fmt(c.s)}, test ${fmt(t.s)}`);
  }
  for (const r of rows) {
    const t = r.timings;
    const parts = ['source', 'guest', 'rootfs', 'disk', 'boot', 'output']
      .filter((k) => t[k] !== undefined)
      .map((k) => `${k} ${fmt(t[k] / 1000)}`)
      .join(', ');
    console.log(
      `${r.label}: convert ${fmt(r.convert)} (in img2vm ${fmt(t.total / 1000)}: ${parts}; disk from ${r.disk?.from ?? 'conversion'}), smoke test ${fmt(r.test)}, job ${fmt(r.convert + r.test)}`,
    );
  }
  const [cold, hit] = rows;
  console.log(
    `--cache-from hit: convert ${((hit.convert / cold.convert) * 100).toFixed(0)} % of the cold one's time; whole job ${(((hit.convert + hit.test) / (cold.convert + cold.test)) * 100).toFixed(0)} %`,
  );
} finally {
  registry.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
