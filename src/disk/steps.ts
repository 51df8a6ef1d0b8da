// The disk steps: the partition table (gpt, mbr) and the file systems (ext4, vfat) written into the raw image at
// their offsets, with no loop device and no mount.
import { open, rm, stat } from 'node:fs/promises';
import type { ConversionRun, StepFn } from '../core/conversion.js';
import { progress } from '../core/events.js';
import type { FileSystemPlan, PlanStep } from '../core/plan.js';
import { formatSize } from '../core/units.js';
import { makeExt4 } from './ext4.js';
import { makeFat } from './fat.js';
import { writePartitionTable } from './table.js';

function fsFor(r: ConversionRun, step: PlanStep): FileSystemPlan {
  const fs = r.plan.filesystems.find((f) => f.role === step.target);
  if (!fs) throw new Error(`the plan has no ${step.target} file system`);
  return fs;
}

/** The raw image at its full size (sparse), made by the first disk step. */
async function ensureRawFile(r: ConversionRun, size: number): Promise<void> {
  const fh = await open(r.rawPath, 'a+');
  try {
    if ((await fh.stat()).size !== size) await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

const table: StepFn = async (r) => {
  const layout = r.plan.layout!;
  await ensureRawFile(r, layout.diskSize);
  const fh = await open(r.rawPath, 'r+');
  try {
    await writePartitionTable(fh.fd, layout);
  } finally {
    await fh.close();
  }
  return `${layout.table.toUpperCase()}, ${formatSize(layout.diskSize)}`;
};

const ext4: StepFn = async (r, step) => {
  const fs = fsFor(r, step);
  if (!r.plan.layout) await ensureRawFile(r, fs.size);
  const source = fs.role === 'boot' ? r.bootStaging : r.staging;
  // mke2fs says nothing while it copies the tree: the image's allocated bytes tell how far it got.
  const expected = fs.role === 'root' ? (r.plan.content?.blocks4k ?? 0) * 4096 : (r.plan.content?.boot?.blocks4k ?? 0) * 4096;
  const stop = watchAllocation(r, expected);
  try {
    await makeExt4({ image: r.rawPath, offset: fs.offset, size: fs.size, uuid: fs.uuid, label: fs.label, inodes: fs.inodes!, journalMiB: fs.journalMiB!, source, hashSeed: fs.hashSeed }, r.ctx);
  } finally {
    stop();
  }
  // The staged tree is no longer needed; free its space before the output is written.
  await rm(source, { recursive: true, force: true });
  return `ext4 ${fs.role}, ${formatSize(fs.size)}`;
};

function watchAllocation(r: ConversionRun, expected: number): () => void {
  const bar = progress(r.ctx.sink, 'disk', 'bytes', expected > 0 ? expected : undefined, 'written');
  let base: number | undefined;
  const timer = setInterval(() => {
    stat(r.rawPath)
      .then((st) => {
        const used = st.blocks * 512;
        base ??= used;
        bar.set(Math.max(0, used - base));
      })
      .catch(() => {});
  }, 500);
  return () => {
    clearInterval(timer);
    bar.end();
  };
}

const vfat: StepFn = async (r, step) => {
  const fs = fsFor(r, step);
  await makeFat({ image: r.rawPath, offset: fs.offset, size: fs.size, volumeId: fs.uuid.replace('-', ''), label: fs.label }, r.ctx);
  return `vfat ESP, ${formatSize(fs.size)}`;
};

export const DISK_STEPS: Record<string, StepFn> = { gpt: table, mbr: table, ext4, vfat };
