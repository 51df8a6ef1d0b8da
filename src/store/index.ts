// The store's interface: one content-addressed store for every kind of entry img2vm keeps between runs.
export { openStore, Store, treeBytes, writeRecord, type Check, type Draft, type EnsureOptions, type StoreEntry, type StoreOptions } from './store.js';
export { KINDS, LAYOUT, type BlobKey, type BuildKey, type DiskKey, type KernelKey, type KeyOf, type Kind } from './kinds.js';
