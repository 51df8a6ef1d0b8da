// The store's interface: one content-addressed store for every kind of entry img2vm keeps between runs.
export { hashPaths, treeBytes, writeRecord } from './files.js';
export {
  openStore,
  Store,
  type Check,
  type Draft,
  type EnsureOptions,
  type StoreEntry,
  type StoreOptions,
} from './store.js';
export {
  KINDS,
  LAYOUT,
  type BlobKey,
  type BuildKey,
  type DiskKey,
  type KernelKey,
  type KeyOf,
  type Kind,
} from './kinds.js';
export {
  canonicalJson,
  diskKey,
  diskKeyOptions,
  DiskKeyFieldsSchema,
  keyAnnotations,
  passwordDigest,
  sha256Hex,
  type DiskKeyFields,
  type DiskKeyOptions,
} from './disk-key.js';
export {
  copyDisk,
  diskCheck,
  diskRecordOf,
  DiskStore,
  DISK_FILE,
  DISK_RECORD,
  parseDiskRecord,
  type DiskRecord,
} from './disks.js';
