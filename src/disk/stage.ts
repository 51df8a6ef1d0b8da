// The disk stage: the disk is opened before the layers are flattened (file contents go straight to the root file
// system's data area inside it), then its partition table (gpt, mbr) and file systems (ext4, vfat) are written as
// bytes at their offsets: no tool, no loop device, no mount.
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Env } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import type { ConversionPlan, FileSystemPlan, PlanStep } from '../core/plan.js';
import { formatSize } from '../core/units.js';
import type { DirNode } from '../rootfs/tree.js';
import { Ext4Writer } from './ext4/index.js';
import { writeFat32, type Fat32File } from './fat32.js';
import { Qcow2Target } from './qcow2/target.js';
import { partitionTableBytes } from './table.js';
import { RawFileTarget, type BlockTarget } from './target.js';
import { LuksVolume, type LuksSecrets } from './luks/volume.js';

/** The disk being assembled: the file it is in, its target, and the root file system's writer on it. */
export interface Disk {
  file: string;
  target: BlockTarget;
  /** The content store the layers' file contents go to, at the root's offset. */
  root: Ext4Writer;
  /** The LUKS2 volume the root is written through (encrypted as written), finished after the root. */
  luks: LuksVolume | null;
}

/**
 * Opens the disk in `file` as the plan's container (qcow2 clusters written directly, or a sparse raw file), with
 * the root's writer at the offset the options fixed. The scope discards it if the run fails before it is closed.
 */
export function openDisk(
  plan: ConversionPlan,
  file: string,
  env: Env,
  o: { container?: 'raw' | 'qcow2'; luks?: LuksSecrets } = {},
): Disk {
  const container = o.container ?? plan.disk.container;
  const t = new PathTagged(
    container === 'qcow2' ? new Qcow2Target(file, { compress: plan.output.compress }) : new RawFileTarget(file),
    file,
  );
  // Reached only when the run failed (the output stage closes it first): the file goes, its tables need not be written.
  env.scope.defer(`close ${file}`, () => t.discard());
  if (plan.luks && !o.luks) throw new Error('the plan encrypts the root but no LUKS2 secrets were given');
  const luks = plan.luks && o.luks ? new LuksVolume(t, plan.disk.rootOffset, plan.luks, o.luks) : null;
  const root = new Ext4Writer({
    target: luks ?? t,
    offset: plan.disk.rootOffset,
    uuid: plan.rootUuid,
    label: 'root',
    hashSeed: plan.rootHashSeed,
    epoch: env.epoch,
  });
  return { file, target: t, root, luks };
}

/** What the disk steps write: the final tree (and /boot's), and the work files the ESP's files come from. */
export interface DiskContent {
  root: DirNode;
  boot: DirNode | null;
}

/** One disk step: writes one part of the disk the plan describes; returns the stage line's detail. */
export type DiskStep = (
  disk: Disk,
  plan: ConversionPlan,
  step: PlanStep,
  content: DiskContent,
  env: Env,
) => Promise<string>;

function fsFor(plan: ConversionPlan, step: PlanStep): FileSystemPlan {
  const fs = plan.filesystems.find((f) => f.role === step.target);
  if (!fs) throw new Error(`the plan has no ${step.target} file system`);
  return fs;
}

const table: DiskStep = async (disk, plan) => {
  const layout = plan.layout;
  if (!layout) throw new Error('the plan has no partition layout');
  // The disk's size is known now that the root's is: a raw file is extended (sparse), a qcow2 told.
  disk.target.resize(layout.diskSize);
  for (const chunk of partitionTableBytes(layout)) disk.target.write(chunk.bytes, chunk.offset);
  return `${layout.table.toUpperCase()}, ${formatSize(layout.diskSize)}`;
};

const ext4: DiskStep = async (disk, plan, step, content, env) => {
  const fs = fsFor(plan, step);
  if (fs.inodes === undefined || fs.journalMiB === undefined || fs.hashSeed === undefined)
    throw new Error(`the plan's ${fs.role} file system lacks its ext4 parameters`);
  const journalBytes = fs.journalMiB * 1024 * 1024;
  if (fs.role === 'root') {
    // The root's file contents are in place since flattening; its metadata goes after them now.
    if (!plan.layout) disk.target.resize(fs.size);
    await disk.root.finish(content.root, {
      sizeBytes: fs.size,
      inodeCount: fs.inodes,
      journalBytes,
      signal: env.signal,
    });
    if (disk.luks) {
      await disk.luks.finish(fs.size, env.signal);
      return `ext4 root in LUKS2 (${plan.luks?.cipher}), ${formatSize(fs.size)}`;
    }
    return `ext4 root, ${formatSize(fs.size)}`;
  }
  // /boot's own file system: its file contents are copied from where flattening put them.
  if (!content.boot) throw new Error('the plan has a /boot file system but the tree has no /boot taken out');
  const w = new Ext4Writer({
    target: disk.target,
    offset: fs.offset,
    maxBytes: fs.size,
    uuid: fs.uuid,
    label: fs.label,
    hashSeed: fs.hashSeed,
    epoch: env.epoch,
  });
  await w.finish(content.boot, { sizeBytes: fs.size, inodeCount: fs.inodes, journalBytes, signal: env.signal });
  return `ext4 ${fs.role}, ${formatSize(fs.size)}`;
};

/** A planned ESP file's content: written by img2vm (content), made in the work directory (work:NAME), or a host file. */
async function espFile(path: string, src: { content?: string; from?: string }, env: Env): Promise<Fat32File> {
  if (src.content !== undefined) return { path, content: Buffer.from(src.content) };
  if (src.from === undefined) throw new Error(`the ESP file ${path} has neither content nor a source`);
  const file = src.from.startsWith('work:') ? join(env.work, src.from.slice(5)) : src.from;
  const st = await lstat(file).catch(() => undefined);
  // Nothing but a regular file is ever copied into an output (a device node would be read forever).
  if (!st?.isFile())
    throw new Img2vmError(
      'badImage',
      `${file} (for the ESP's ${path}) is not a regular file`,
      'the image or the host has something else at that path',
    );
  return { path, content: { size: st.size, read: () => createReadStream(file) } };
}

const vfat: DiskStep = async (disk, plan, step, _content, env) => {
  const fs = fsFor(plan, step);
  const files: Fat32File[] = [];
  for (const f of plan.guestFiles) {
    if (f.fs !== 'esp' || f.path.endsWith('/')) continue;
    files.push(await espFile(f.path.replace(/^\/+/, ''), f, env));
  }
  await writeFat32(
    disk.target,
    {
      offset: fs.offset,
      size: fs.size,
      volumeId: Number.parseInt(fs.uuid.replace('-', ''), 16),
      label: fs.label,
      epoch: env.epoch,
    },
    files,
    env.signal,
  );
  return `vfat ESP, ${formatSize(fs.size)}, ${files.length} file${files.length === 1 ? '' : 's'}`;
};

export const DISK_STEPS: Record<string, DiskStep> = { gpt: table, mbr: table, ext4, vfat };

/**
 * The disk's target with its file named in every write failure (fd writes say only ENOSPC), so a full file system
 * is reported where it is full.
 */
class PathTagged implements BlockTarget {
  constructor(
    private readonly t: BlockTarget,
    readonly path: string,
  ) {}

  private tagged<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err && typeof err === 'object' && typeof err.code === 'string' && err.path === undefined)
        err.path = this.path;
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
