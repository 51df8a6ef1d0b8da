// qcow2, the QEMU/KVM native format, written directly by the disk's Qcow2Target (no raw copy, no qemu-img);
// --compress compresses its clusters when the target closes.
import type { OutputFormat } from './format.js';

export const qcow2: OutputFormat = {
  id: 'qcow2',
  extensions: ['.qcow2'],
  assembly: { container: 'qcow2', inPlace: true },
  tools: [],
  // The disk's target is this file: there is nothing left to convert.
  async write() {
    return { sideFiles: [] };
  },
};
