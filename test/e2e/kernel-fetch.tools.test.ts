// NEEDS THE NETWORK: fetches Debian's real cloud kernel from deb.debian.org (https) into a temp cache, twice. It fails, never skips, when the archive is unreachable.
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../src/core/context.js';
import type { Img2vmEvent } from '../../src/core/events.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import {
  getKernel,
  kernelVersionOf,
  parseKernelSource,
  resolveModules,
  type KernelBundle,
} from '../../src/kernel/index.js';

let dir: string;
let ctx: RunContext;
const events: Img2vmEvent[] = [];
let bundle: KernelBundle | undefined;
let fetchMs: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'img2vm-kernel-e2e-'));
  ctx = {
    work: await mkdtemp(join(dir, 'work-')),
    signal: new AbortController().signal,
    sink: (e) => events.push(e),
    scope: new Scope(),
    random: createRandom(),
  };
});

/** Every test needs the fetched kernel; without it each one fails (a failed hook would only mark them skipped). */
function fetched(): KernelBundle {
  expect(bundle, 'the kernel fetch from deb.debian.org failed (see the first test)').toBeDefined();
  return bundle!;
}

afterAll(async () => {
  await ctx?.scope.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("Debian's cloud kernel from deb.debian.org (network)", () => {
  it('is a trixie cloud kernel, verified and unpacked into the cache', async () => {
    const t0 = performance.now();
    // No catch: an unreachable archive fails here with its message.
    bundle = await getKernel(parseKernelSource(undefined), ctx, { cacheDir: join(dir, 'cache') });
    fetchMs = performance.now() - t0;
    expect(bundle.version).toMatch(/^6\.12\.\d+\+deb13(\.\d+)?-cloud-amd64$/);
    expect(bundle.origin).toMatch(
      /^Debian trixie(-security|-updates)? linux-image-6\.12\.\d+\+deb13(\.\d+)?-cloud-amd64 6\.12\.\d+-\d+$/,
    );
    expect(bundle.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(bundle.vmlinuz.startsWith(join(dir, 'cache', 'kernels', 'trees', `sha256-${bundle.id.slice(7)}`))).toBe(
      true,
    );
    console.log(`fetched ${bundle.origin} in ${Math.round(fetchMs)} ms`);
  });

  it('has a bzImage whose header names the same version', async () => {
    const bundle = fetched();
    const fh = await open(bundle.vmlinuz, 'r');
    const head = Buffer.alloc(0x210);
    await fh.read(head, 0, head.length, 0);
    await fh.close();
    expect(head.readUInt16LE(0x1fe)).toBe(0xaa55);
    expect(head.toString('latin1', 0x202, 0x206)).toBe('HdrS');
    expect(await kernelVersionOf(bundle.vmlinuz)).toBe(bundle.version);
  });

  it('has modules.dep (made by depmod) and the drivers a VM needs, as xz-compressed modules', async () => {
    const bundle = fetched();
    expect(bundle.modulesDir).toBe(join(bundle.vmlinuz, '..', '..', 'lib', 'modules', bundle.version));
    const dep = await readFile(join(bundle.modulesDir!, 'modules.dep'), 'utf8');
    expect(dep.split('\n').length).toBeGreaterThan(1000);
    const names = (wanted: string[]) => resolveModules(bundle, wanted).map((m) => m.name);
    // Built in: NVMe, ext4, virtio-pci. Modules: virtio-blk, virtio-scsi (+ SCSI core), virtio-net (+ failover), virtio-mmio, vfat (+ fat).
    expect(names(['nvme', 'ext4', 'virtio_pci'])).toEqual([]);
    expect(names(['virtio_blk'])).toEqual(['virtio_blk']);
    expect(names(['virtio_scsi'])).toEqual(['scsi_common', 'scsi_mod', 'virtio_scsi']);
    expect(names(['virtio_net'])).toEqual(['failover', 'net_failover', 'virtio_net']);
    expect(names(['virtio_mmio'])).toEqual(['virtio_mmio']);
    expect(names(['vfat'])).toEqual(['fat', 'vfat']);
    expect(new Set(resolveModules(bundle, ['virtio_blk', 'virtio_scsi', 'vfat']).map((m) => m.compressed))).toEqual(
      new Set(['xz']),
    );
    expect(await readFile(bundle.config!, 'utf8')).toMatch(/^CONFIG_MODULE_DECOMPRESS=y$/m);
  });

  it('came over https, with the security suite, and is remembered so that no older index or kernel is taken later', async () => {
    fetched();
    const seen = JSON.parse(await readFile(join(dir, 'cache', 'kernels', 'seen.json'), 'utf8')) as {
      releases: Record<string, { date: string; at: string }>;
      kernels: Record<string, { version: string }>;
    };
    expect(Object.keys(seen.releases).sort()).toEqual(['trixie', 'trixie-security', 'trixie-updates']);
    expect(seen.releases['trixie-security']!.at).toBe('https://deb.debian.org/debian-security');
    expect(seen.releases.trixie!.at).toBe('https://deb.debian.org/debian');
    expect(Object.keys(seen.kernels)).toEqual(['amd64:trixie,trixie-updates,trixie-security']);
  });

  it('asked again at once, the archive passes its own memory check (no refusal of the same or a newer index)', async () => {
    const bundle = fetched();
    expect(await getKernel(parseKernelSource(undefined), ctx, { cacheDir: join(dir, 'cache'), maxAgeMs: 0 })).toEqual(
      bundle,
    );
  });

  it('is served from the cache the second time, without the network', async () => {
    const bundle = fetched();
    const t0 = performance.now();
    expect(await getKernel(parseKernelSource(undefined), ctx, { cacheDir: join(dir, 'cache'), offline: true })).toEqual(
      bundle,
    );
    console.log(`cached lookup in ${Math.round(performance.now() - t0)} ms`);
  });
});
