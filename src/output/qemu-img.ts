// Output formats that qemu-img writes from the raw disk (sparse-aware, so unused space costs nothing).
import { run } from '../tools/index.js';
import type { OutputFormat } from './format.js';

export function qemuImgConvertArgs(src: string, dest: string, format: string, opts: { compress?: boolean; options?: string } = {}): string[] {
  return ['convert', '-f', 'raw', '-O', format, ...(opts.compress ? ['-c'] : []), ...(opts.options ? ['-o', opts.options] : []), src, dest];
}

/** A format written by `qemu-img convert -O qemuFormat`; `options` are its -o creation options. */
export function qemuImgFormat(id: string, extensions: string[], qemuFormat: string, options?: string, compressible = false): OutputFormat {
  return {
    id,
    extensions,
    async write(rawPath, dest, ctx, opts) {
      await run('qemu-img', qemuImgConvertArgs(rawPath, dest, qemuFormat, { compress: compressible && opts.compress, options }), { signal: ctx.signal });
    },
  };
}
