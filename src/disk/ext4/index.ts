// The one-pass ext4 writer: no privileges, data streamed straight into the image, byte-reproducible output.
export {
  Ext4Writer,
  type Ext4FinishOptions,
  type Ext4Measure,
  type Ext4Summary,
  type Ext4WriterOptions,
} from './writer.js';
export { MemoryStore } from './memory-store.js';
export { MAX_BLOCKS, MAX_GROUPS, BLOCK, GDT_SPAN } from './geometry.js';
export { defaultJournalBlocks } from './journal.js';
export { ext4Shape } from './layout.js';
