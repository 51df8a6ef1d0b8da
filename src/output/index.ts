// Picks the output format from --format or the file extension.
import { extname } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { OutputFormat } from './format.js';
import { containerdisk } from './containerdisk.js';
import { qcow2 } from './qcow2.js';
import { raw } from './raw.js';
import { rootfs } from './rootfs.js';
import { vdi } from './vdi.js';
import { vhd } from './vhd.js';
import { vhdx } from './vhdx.js';
import { vmdk } from './vmdk.js';

export const FORMATS: readonly OutputFormat[] = [raw, qcow2, vmdk, vhdx, vhd, vdi, rootfs, containerdisk];

export function formatIds(): string[] {
  return FORMATS.map((f) => f.id);
}

export function resolveFormat(output: string, format?: string): OutputFormat {
  if (format) {
    const f = FORMATS.find((x) => x.id === format);
    if (!f) throw new Img2vmError('usage', `unknown --format "${format}"`, `choose one of: ${formatIds().join(', ')}`);
    return f;
  }
  const ext = extname(output).toLowerCase();
  const f = FORMATS.find((x) => x.extensions.includes(ext));
  if (!f) {
    const exts = FORMATS.flatMap((x) => x.extensions).join(', ');
    throw new Img2vmError(
      'usage',
      ext
        ? `cannot tell the output format from the extension "${ext}"`
        : `the output "${output}" has no extension to tell its format`,
      `use one of ${exts}, or give --format (${formatIds().join(', ')})`,
    );
  }
  return f;
}
