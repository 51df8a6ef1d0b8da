// Raw output: the disk is assembled in the temporary output itself, which is renamed into place.
import type { OutputFormat } from './format.js';

export const raw: OutputFormat = {
  id: 'raw',
  extensions: ['.raw', '.img'],
  assembly: { container: 'raw', inPlace: true },
  tools: [],
  async write() {
    return { sideFiles: [] };
  },
};
