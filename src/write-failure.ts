// A full or read-only file system, wherever a step hit it, as the one message that says where and how much is needed.
import { basename, dirname, relative, resolve } from 'node:path';
import { asWriteError, freeBytes, isNoSpace, isReadOnly } from './core/no-space.js';
import { cacheDir } from './core/paths.js';
import type { ConversionPlan } from './core/plan.js';
import { formatSize } from './core/units.js';

/** What a failed write is explained with, as far as the run has got: the disk and output files, what the content needs. */
export interface FailureContext {
  work: string;
  /** The file the disk is assembled in, once it is open. */
  disk?: string;
  /** The temporary output, when it is not the disk itself. */
  tmpOut?: string;
  plan?: ConversionPlan;
  /** The image's layers' sizes, summed (the least the disk will hold). */
  layerBytes?: number;
}

/** Passes anything but a full or read-only file system on as it is. */
export function writeFailure(e: unknown, c: FailureContext): unknown {
  if (!isNoSpace(e) && !isReadOnly(e)) return e;
  const file = failedPath(e, c);
  const inWork = file === c.work || file.startsWith(`${c.work}/`);
  const area = file.startsWith(`${cacheDir()}/`) ? 'cache' : inWork ? 'work' : 'output';
  const content = c.plan?.content;
  const size = c.plan?.layout?.diskSize ?? c.plan?.filesystems.find((f) => f.role === 'root')?.size;
  // The disk's data is what a sparse disk file (and a converted copy of it) takes; its virtual size bounds it.
  const isDisk = file === c.disk || file === c.tmpOut;
  const need = !isDisk
    ? {}
    : content
      ? {
          needBytes: content.blocks4k * 4096,
          needNote: `the disk's data${size ? `; the disk is ${formatSize(size)} at most` : ''}`,
        }
      : (c.layerBytes ?? 0) > 0
        ? { needBytes: c.layerBytes, needNote: "at least: the image's layers are that big" }
        : {};
  const what = isDisk
    ? 'the disk'
    : area === 'cache'
      ? 'the cache'
      : area === 'output'
        ? basename(file)
        : file === c.work
          ? 'the work files (kernel, initramfs, boot loader images)'
          : `the work file ${relative(c.work, file)}`;
  return asWriteError(e, {
    area,
    what,
    path: area === 'output' ? dirname(file) : area === 'work' ? c.work : file,
    ...need,
  });
}

/**
 * The file a write failed on: named by the error when it can (copyFile's dest), else the disk, the work directory
 * or the cache, whichever has least room left (writes through a descriptor do not say which file).
 */
function failedPath(e: unknown, c: FailureContext): string {
  const err = e as { dest?: unknown; path?: unknown; cause?: unknown };
  const named = typeof err.dest === 'string' ? err.dest : typeof err.path === 'string' ? err.path : undefined;
  if (named) return resolve(named);
  if (err.cause && typeof err.cause === 'object') {
    const inner = err.cause as { dest?: unknown; path?: unknown };
    if (typeof inner.dest === 'string' || typeof inner.path === 'string') return failedPath(err.cause, c);
  }
  const candidates = [...(c.disk ? [c.disk] : []), c.work, cacheDir()];
  const free = candidates.map((p) => freeBytes(p) ?? Number.POSITIVE_INFINITY);
  return candidates[free.indexOf(Math.min(...free))]!;
}
