// The disk steps: the partition table (gpt, mbr) and the file systems (ext4, vfat), written as bytes through the
// disk's BlockTarget at their offsets: no tool, no loop device, no mount.
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConversionRun, StepFn } from '../core/conversion.js';
import { Img2vmError } from '../core/errors.js';
import type { FileSystemPlan, PlanStep } from '../core/plan.js';
import { formatSize } from '../core/units.js';
import { Ext4Writer } from './ext4/index.js';
import { writeFat32, type Fat32File } from './fat32.js';
import { partitionTableBytes } from './table.js';

function fsFor(r: ConversionRun, step: PlanStep): FileSystemPlan {
  const fs = r.plan.filesystems.find((f) => f.role === step.target);
  if (!fs) throw new Error(`the plan has no ${step.target} file system`);
  return fs;
}

const table: StepFn = async (r) => {
  const layout = r.plan.layout!;
  const t = r.target!;
  // The disk's size is known now that the root's is: a raw file is extended (sparse), a qcow2 told.
  t.resize(layout.diskSize);
  for (const chunk of partitionTableBytes(layout)) t.write(chunk.bytes, chunk.offset);
  return `${layout.table.toUpperCase()}, ${formatSize(layout.diskSize)}`;
};

const ext4: StepFn = async (r, step) => {
  const fs = fsFor(r, step);
  const journalBytes = fs.journalMiB! * 1024 * 1024;
  if (fs.role === 'root') {
    // The root's file contents are in place since flattening; its metadata goes after them now.
    if (!r.plan.layout) r.target!.resize(fs.size);
    await r.rootWriter!.finish(r.tree!.root, { sizeBytes: fs.size, inodeCount: fs.inodes!, journalBytes, signal: r.ctx.signal });
    return `ext4 root, ${formatSize(fs.size)}`;
  }
  // /boot's own file system: its file contents are copied from where flattening put them.
  const w = new Ext4Writer({ target: r.target!, offset: fs.offset, maxBytes: fs.size, uuid: fs.uuid, label: fs.label, hashSeed: fs.hashSeed!, epoch: r.epoch });
  await w.finish(r.bootTree!, { sizeBytes: fs.size, inodeCount: fs.inodes!, journalBytes, signal: r.ctx.signal });
  return `ext4 ${fs.role}, ${formatSize(fs.size)}`;
};

/** A planned ESP file's content: written by img2vm (content), made in the work directory (work:NAME), or a host file. */
async function espFile(r: ConversionRun, path: string, src: { content?: string; from?: string }): Promise<Fat32File> {
  if (src.content !== undefined) return { path, content: Buffer.from(src.content) };
  const file = src.from!.startsWith('work:') ? join(r.ctx.work, src.from!.slice(5)) : src.from!;
  const st = await lstat(file).catch(() => undefined);
  // Nothing but a regular file is ever copied into an output (a device node would be read forever).
  if (!st?.isFile()) throw new Img2vmError('badImage', `${file} (for the ESP's ${path}) is not a regular file`, 'the image or the host has something else at that path');
  return { path, content: { size: st.size, read: () => createReadStream(file) } };
}

const vfat: StepFn = async (r, step) => {
  const fs = fsFor(r, step);
  const files: Fat32File[] = [];
  for (const f of r.plan.guestFiles) {
    if (f.fs !== 'esp' || f.path.endsWith('/')) continue;
    files.push(await espFile(r, f.path.replace(/^\/+/, ''), f));
  }
  await writeFat32(r.target!, { offset: fs.offset, size: fs.size, volumeId: Number.parseInt(fs.uuid.replace('-', ''), 16), label: fs.label, epoch: r.epoch }, files, r.ctx.signal);
  return `vfat ESP, ${formatSize(fs.size)}, ${files.length} file${files.length === 1 ? '' : 's'}`;
};

export const DISK_STEPS: Record<string, StepFn> = { gpt: table, mbr: table, ext4, vfat };
