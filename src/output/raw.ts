// Raw output: the work image itself, which is built beside the target and renamed into place.
import { rename } from 'node:fs/promises';
import type { OutputFormat } from './format.js';

export const raw: OutputFormat = {
  id: 'raw',
  extensions: ['.raw', '.img'],
  isRaw: true,
  async write(i) {
    if (i.raw !== i.dest) await rename(i.raw, i.dest);
  },
};
