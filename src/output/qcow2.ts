// qcow2 output through qemu-img convert (sparse-aware, so unused space costs nothing).
import { run } from '../tools/index.js';
import type { OutputFormat } from './format.js';

export function qemuImgConvertArgs(src: string, dest: string, format: string, opts: { compress?: boolean; options?: string } = {}): string[] {
  return ['convert', '-f', 'raw', '-O', format, ...(opts.compress ? ['-c'] : []), ...(opts.options ? ['-o', opts.options] : []), src, dest];
}

export const qcow2: OutputFormat = {
  id: 'qcow2',
  extensions: ['.qcow2'],
  async write(rawPath, dest, ctx, opts) {
    await run('qemu-img', qemuImgConvertArgs(rawPath, dest, 'qcow2', { compress: opts.compress }), { signal: ctx.signal });
  },
};
