// Which BlockTarget a conversion writes its disk through: the output file itself when the format allows it
// (raw, qcow2 clusters written directly, the bare ext4 of the direct-kernel output), else a raw work file that
// the output step converts.
import { join } from 'node:path';
import type { ConversionRun } from '../core/conversion.js';
import type { ConvertOptions } from '../core/options.js';
import type { ConversionPlan } from '../core/plan.js';
import { RawFileTarget, type BlockTarget } from '../disk/target.js';
import { planLayout, partitionByRole } from '../disk/layout.js';
import { createRandom } from '../core/random.js';
import { SYSTEMD_BOOT_ESP_SIZE } from '../boot/systemd-boot.js';
import { Qcow2Target } from './qcow2-target.js';

/** The file the disk is assembled in: the temporary output for raw, qcow2 and rootfs, a work file otherwise. */
export function diskFile(r: ConversionRun): string {
  const id = r.plan.output.format;
  if (id === 'raw' || id === 'qcow2' || id === 'rootfs') return r.tmpOut;
  if (id === 'containerdisk') return join(r.ctx.work, 'containerdisk.qcow2');
  return join(r.ctx.work, 'disk.raw');
}

export function openDiskTarget(r: ConversionRun): BlockTarget {
  const file = diskFile(r);
  const id = r.plan.output.format;
  const t = new PathTagged(id === 'qcow2' || id === 'containerdisk' ? new Qcow2Target(file, { compress: r.plan.output.compress }) : new RawFileTarget(file), file);
  // Reached only when the run failed (the output step closes it first): the file goes, its tables need not be written.
  r.ctx.scope.defer(`close ${file}`, () => t.discard());
  return t;
}

/**
 * The disk's target with its file named in every write failure (fd writes say only ENOSPC), so a full file system
 * is reported where it is full.
 */
class PathTagged implements BlockTarget {
  constructor(private readonly t: BlockTarget, readonly path: string) {}

  private tagged<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err && typeof err === 'object' && typeof err.code === 'string' && err.path === undefined) err.path = this.path;
      throw e;
    }
  }

  write(buf: Uint8Array, offset: number): void {
    this.tagged(() => this.t.write(buf, offset));
  }

  read(buf: Uint8Array, offset: number): number {
    return this.t.read(buf, offset);
  }

  size(): number {
    return this.t.size();
  }

  resize(bytes: number): void {
    this.tagged(() => this.t.resize(bytes));
  }

  close(): void {
    this.tagged(() => this.t.close());
  }

  discard(): void {
    if (this.t.discard) this.t.discard();
    else this.t.close();
  }
}

/**
 * Where the root file system starts: 0 for the direct-kernel output, else after the partitions before it,
 * whose sizes do not depend on the content (so file data can be written before the root's size is known).
 */
export function rootOffset(plan: ConversionPlan, o: ConvertOptions): number {
  if (plan.boot.mode === 'direct-kernel') return 0;
  if (plan.layout) return partitionByRole(plan.layout, 'root')!.start;
  const probe = planLayout({
    boot: o.boot,
    table: o.partitionTable,
    rootSize: 1024 * 1024,
    bootPartitionSize: o.bootPartition,
    random: createRandom('offsets'),
    espSize: plan.boot.loaders.includes('systemd-boot') ? SYSTEMD_BOOT_ESP_SIZE : undefined,
  });
  return partitionByRole(probe, 'root')!.start;
}
