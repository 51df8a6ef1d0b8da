// Output formats that qemu-img writes from the raw disk (sparse-aware, so unused space costs nothing).
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { isNoSpace, noSpaceError } from '../core/no-space.js';
import { testHook } from '../core/test-hook.js';
import type { RunContext } from '../core/context.js';
import { makeReproducible, type DiskFormatId } from './reproducible.js';
import { progress } from '../core/events.js';
import { run } from '../tools/index.js';
import type { OutputFormat } from './format.js';

export function qemuImgConvertArgs(
  src: string,
  dest: string,
  format: string,
  opts: { compress?: boolean; options?: string; progress?: boolean } = {},
): string[] {
  return [
    'convert',
    ...(opts.progress ? ['-p'] : []),
    '-f',
    'raw',
    '-O',
    format,
    ...(opts.compress ? ['-c'] : []),
    ...(opts.options ? ['-o', opts.options] : []),
    src,
    dest,
  ];
}

/** Runs qemu-img convert with its progress meter turned into progress events (percent of the disk). */
export async function qemuImgConvert(
  src: string,
  dest: string,
  format: string,
  ctx: RunContext,
  opts: { compress?: boolean; options?: string } = {},
): Promise<void> {
  const bar = progress(ctx.sink, 'output', 'entries', 100, 'percent');
  try {
    await run('qemu-img', qemuImgConvertArgs(src, dest, format, { ...opts, progress: true }), {
      signal: ctx.signal,
      onLine: (l) => {
        const m = /\((\d+(?:\.\d+)?)\/100%\)/.exec(l);
        if (m) bar.set(Number(m[1]));
        // qemu-img goes on while a test signals (see core/test-hook.ts).
        void testHook('during', 'output/convert');
      },
    });
  } catch (e) {
    // qemu-img says "No space left on device" on stderr; the disk's data is what the converted file needs.
    if (isNoSpace(e)) {
      const data = await stat(src)
        .then((st) => st.blocks * 512)
        .catch(() => undefined);
      throw noSpaceError(
        {
          area: 'output',
          what: `the ${format} output`,
          path: dirname(dest),
          ...(data !== undefined ? { needBytes: data, needNote: "the disk's data" } : {}),
        },
        e,
      );
    }
    throw e;
  }
  bar.end();
}

/** How qemu-img writes each of these formats (its -O name and -o creation options), by img2vm's id. */
export const QEMU_FORMATS: Record<string, { qemuFormat: string; options?: string }> = {};

/** A format written by `qemu-img convert -O qemuFormat`; `options` are its -o creation options. */
export function qemuImgFormat(
  id: string,
  extensions: string[],
  qemuFormat: string,
  options?: string,
  compressible = false,
): OutputFormat {
  QEMU_FORMATS[id] = { qemuFormat, options };
  return {
    id,
    extensions,
    assembly: { container: 'raw', inPlace: false },
    tools: ['qemu-img'],
    async write(i) {
      await qemuImgConvert(i.disk, i.dest, qemuFormat, i.env, {
        compress: compressible && i.plan.output.compress,
        options,
      });
      // qemu-img puts random ids and the time into these formats: they come from the seed and the epoch instead.
      makeReproducible(id as DiskFormatId, i.dest, i.env.random.fork(`format-${id}`), i.env.epoch, {
        finalName: i.plan.output.path ? basename(i.plan.output.path) : undefined,
      });
      return { sideFiles: [] };
    },
  };
}
