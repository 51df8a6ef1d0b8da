// Helpers of the robustness e2e tests: a light image made in code, a counting proxy in front of docker-registry, runs
// paused at a test hook (IMG2VM_TEST_HOOK) and signalled there, and the checks that nothing was left behind.
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { fakeBzImage } from '../../fixtures/debian-mirror/kernel.js';
import { buildImage, imageBlobs, tarDirectory, writeLayout, type BuiltImage } from '../../fixtures/hostile/images.js';
import { layerOf } from '../../fixtures/oci.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import type { RunContext } from '../../src/core/context.js';
import { pushOciImage } from '../../src/source/push.js';
import { BIN } from './helpers.js';

/** Bytes that do not compress (so layers and disks have real data) but are the same on every run. */
export function noise(n: number, seed: string): Buffer {
  return createRandom(seed).bytes(n);
}

/**
 * An image whose --raw conversion needs no builder, no daemon and no network: busybox, a kernel img2vm accepts
 * (a bzImage header), and `dataMiB` of data over two layers so that pulls, unpacking and flattening take
 * many chunks.
 */
export async function lightImage(dataMiB = 6): Promise<BuiltImage> {
  const half = Math.ceil((dataMiB * 1048576) / 2);
  const base = await layerOf([
    { name: 'bin/', dir: true },
    { name: 'bin/busybox', mode: 0o755, content: readFileSync('/bin/busybox') },
    { name: 'bin/sh', symlink: 'busybox' },
    { name: 'boot/', dir: true },
    { name: 'boot/vmlinuz-6.1.0-img2vm-test', content: fakeBzImage('6.1.0-img2vm-test', 64 * 1024) },
    { name: 'etc/', dir: true },
    { name: 'data/', dir: true },
    { name: 'data/a', content: noise(half, 'layer-a') },
  ]);
  const top = await layerOf([{ name: 'data/b', content: noise(half, 'layer-b') }]);
  return buildImage({ layers: [base, top] });
}

/** Writes a built image as an oci-archive tagged `tag`. */
export async function writeArchive(img: BuiltImage, dest: string, tag = 'latest'): Promise<void> {
  const dir = mkdtempSync(join(dest, '..', '.layout-'));
  try {
    await writeLayout(dir, [{ top: img.manifest, tag }], imageBlobs(img));
    writeFileSync(dest, await tarDirectory(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function testContext(work: string): RunContext {
  return {
    work,
    signal: new AbortController().signal,
    sink: () => {},
    scope: new Scope(),
    random: createRandom('e2e'),
  };
}

/** Pushes a built image to a registry as REF (host/repo:tag). */
export async function pushBuilt(img: BuiltImage, ref: string, work: string): Promise<void> {
  const ctx = testContext(work);
  try {
    await pushOciImage(
      ref,
      [img.config, ...img.layers].map((b) => ({
        digest: b.digest,
        size: b.size,
        mediaType: b.mediaType,
        bytes: b.bytes,
      })),
      { bytes: img.manifest.bytes, mediaType: img.manifest.mediaType },
      ctx,
    );
  } finally {
    await ctx.scope.close();
  }
}

/** A proxy on 127.0.0.1 that counts GET requests by path (blobs, manifests) and can hold blob answers back. */
export class CountingProxy {
  readonly gets = new Map<string, number>();
  private server!: Server;
  private held: (() => void)[] = [];
  /** While this returns false, blob GETs wait (to make concurrent runs overlap without sleeping). */
  releaseWhen: () => boolean = () => true;

  constructor(private readonly upstream: string) {}

  get host(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Blob GETs waiting for releaseWhen(). */
  get heldCount(): number {
    return this.held.length;
  }

  blobGets(digest: string): number {
    return [...this.gets].filter(([p]) => p.endsWith(`/blobs/${digest}`)).reduce((n, [, c]) => n + c, 0);
  }

  manifestGets(): number {
    return [...this.gets].filter(([p]) => p.includes('/manifests/')).reduce((n, [, c]) => n + c, 0);
  }

  async start(): Promise<void> {
    const [uh, up] = this.upstream.split(':');
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      if (req.method === 'GET') this.gets.set(path, (this.gets.get(path) ?? 0) + 1);
      const forward = () => {
        const up2 = request(
          { host: uh, port: Number(up), method: req.method, path: req.url, headers: req.headers },
          (ur) => {
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            ur.pipe(res);
          },
        );
        up2.on('error', () => res.destroy());
        // A held GET has ended long ago: piping it would never end the upstream request.
        if (req.method === 'GET' || req.method === 'HEAD') up2.end();
        else req.pipe(up2);
      };
      if (req.method === 'GET' && path.includes('/blobs/') && !this.releaseWhen()) this.held.push(forward);
      else forward();
      this.poke();
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
  }

  /** Lets held requests go once releaseWhen() says so. */
  poke(): void {
    if (!this.releaseWhen()) return;
    const h = this.held;
    this.held = [];
    for (const f of h) f();
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

export interface Interrupted {
  exitCode: number | undefined;
  signal: string | undefined;
  stderr: string;
  pid: number;
}

/**
 * Runs img2vm with IMG2VM_TEST_HOOK=hook, waits for it to report the hook on stderr, sends `signal`, and returns
 * how it ended. Fails with the run's output when it ends before reaching the hook.
 */
export async function interruptAt(
  hook: string,
  args: string[],
  env: Record<string, string>,
  signal: NodeJS.Signals = 'SIGINT',
): Promise<Interrupted> {
  const child: ResultPromise = execa(BIN, args, {
    env: { CI: 'true', ...env, IMG2VM_TEST_HOOK: hook },
    reject: false,
    buffer: true,
  });
  const [when, point] = hook.split(/:(.*)/s);
  const line = `img2vm-hook: ${when} ${point}`;
  let stderr = '';
  const reached = await new Promise<boolean>((resolve) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += String(d);
      if (stderr.includes(line)) resolve(true);
    });
    void child.then(() => resolve(false));
  });
  if (!reached) {
    const r = await child;
    throw new Error(
      `img2vm ended (exit ${r.exitCode}) before reaching ${hook}:\n${String(r.stderr)}\n${String(r.stdout)}`,
    );
  }
  child.kill(signal);
  const r = await child;
  return { exitCode: r.exitCode, signal: r.signal, stderr: String(r.stderr), pid: child.pid! };
}

/** The error lines img2vm ends with: the message and its hint. */
export function lastError(stderr: string): { message: string; hint: string } {
  const lines = stderr.trim().split('\n');
  let i = lines.length - 1;
  while (i >= 0 && !lines[i]!.startsWith('img2vm: error: ')) i--;
  expect(i, `no error line in:\n${stderr}`).toBeGreaterThanOrEqual(0);
  return { message: lines[i]!.slice('img2vm: error: '.length), hint: (lines[i + 1] ?? '').replace(/^ {2}hint: /, '') };
}

/** A directory's entries; none when it was never made. */
export function entries(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/** Processes whose command line names any of these paths (img2vm's children would: their argv holds the work dir). */
export async function processesNaming(paths: string[]): Promise<string[]> {
  const r = await execa('ps', ['-eo', 'pid=,args='], { reject: false });
  return r.stdout.split('\n').filter((l) => paths.some((p) => l.includes(p)) && !/\bps -eo\b/.test(l));
}

export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[1]?.startsWith(dir));
}

/** runc containers of a process (their ids carry its pid) or with a bundle below dir. */
export async function runcContainers(pid: number, dir: string): Promise<string[]> {
  const r = await execa('runc', ['list', '--format', 'json'], { reject: false });
  expect(r.exitCode, `runc list: ${r.stderr}`).toBe(0);
  const list = (JSON.parse(r.stdout || 'null') as { id: string; bundle: string }[] | null) ?? [];
  return list.filter((c) => c.id.startsWith(`img2vm-${pid}-`) || c.bundle.startsWith(dir)).map((c) => c.id);
}

/** Every container (running or not) made from this image or an image built on it: `docker ps -a --filter ancestor=`. */
export async function dockerContainersFrom(image: string): Promise<string[]> {
  const r = await execa(
    'docker',
    ['ps', '-a', '--no-trunc', '--filter', `ancestor=${image}`, '--format', '{{.ID}} {{.Image}} {{.Status}}'],
    { reject: false },
  );
  expect(r.exitCode, `docker ps -a: ${r.stderr}`).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

export function signalCode(signal: NodeJS.Signals): number {
  return { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }[signal as 'SIGINT'];
}
