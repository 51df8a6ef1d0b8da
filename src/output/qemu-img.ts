// Output formats that qemu-img writes from the raw disk (sparse-aware, so unused space costs nothing).
import { basename } from 'node:path';
import type { RunContext } from '../core/context.js';
import { epochSeconds } from '../core/epoch.js';
import { makeReproducible, type DiskFormatId } from './reproducible.js';
import { progress } from '../core/events.js';
import { run } from '../tools/index.js';
import type { OutputFormat } from './format.js';

export function qemuImgConvertArgs(src: string, dest: string, format: string, opts: { compress?: boolean; options?: string; progress?: boolean } = {}): string[] {
  return ['convert', ...(opts.progress ? ['-p'] : []), '-f', 'raw', '-O', format, ...(opts.compress ? ['-c'] : []), ...(opts.options ? ['-o', opts.options] : []), src, dest];
}

/** Runs qemu-img convert with its progress meter turned into progress events (percent of the disk). */
export async function qemuImgConvert(src: string, dest: string, format: string, ctx: RunContext, opts: { compress?: boolean; options?: string } = {}): Promise<void> {
  const bar = progress(ctx.sink, 'output', 'entries', 100, 'percent');
  await run('qemu-img', qemuImgConvertArgs(src, dest, format, { ...opts, progress: true }), {
    signal: ctx.signal,
    onLine: (l) => {
      const m = /\((\d+(?:\.\d+)?)\/100%\)/.exec(l);
      if (m) bar.set(Number(m[1]));
    },
  });
  bar.end();
}

/** How qemu-img writes each of these formats (its -O name and -o creation options), by img2vm's id. */
export const QEMU_FORMATS: Record<string, { qemuFormat: string; options?: string }> = {};

/** A format written by `qemu-img convert -O qemuFormat`; `options` are its -o creation options. */
export function qemuImgFormat(id: string, extensions: string[], qemuFormat: string, options?: string, compressible = false): OutputFormat {
  QEMU_FORMATS[id] = { qemuFormat, options };
  return {
    id,
    extensions,
    async write(i) {
      await qemuImgConvert(i.raw, i.dest, qemuFormat, i.ctx, { compress: compressible && i.plan.output.compress, options });
      // qemu-img puts random ids and the time into these formats: they come from the seed and the epoch instead.
      makeReproducible(id as DiskFormatId, i.dest, i.ctx.random.fork(`format-${id}`), epochSeconds(), { finalName: i.plan.output.path ? basename(i.plan.output.path) : undefined });
    },
  };
}
