// What `img2vm cache` lists and prunes: one entry per cached thing, in whichever store holds it, with its size and last use.

export type CacheKind = 'guest-build' | 'source-image' | 'registry-blob' | 'kernel' | 'converted-disk';
export type CacheStore = 'img2vm' | 'docker' | 'podman';

export interface CacheEntry {
  kind: CacheKind;
  store: CacheStore;
  /** What the user recognises: an image reference, a blob digest, a kernel version. */
  name: string;
  /** A short description (template and base, kernel origin). */
  detail: string;
  bytes: number;
  /** ISO time of the last use img2vm can tell (a use stamp, a file's access time, an image's tag time). */
  lastUsed: string;
  /** Why prune leaves it alone now (a running img2vm holds it), or null. */
  busy: string | null;
  /** A path in img2vm's cache, or the image id in its store. */
  location: string;
}

export type RemoveOutcome = { removed: true; freed: number; note?: string } | { removed: false; why: string };

/** An entry and how to remove it (kept apart so the entry stays plain data for --json). */
export interface Removable {
  entry: CacheEntry;
  remove(): Promise<RemoveOutcome>;
}

export interface Inventory {
  items: Removable[];
  /** Stores that could not be read, and why (a daemon that does not answer, a tool not installed). */
  notes: string[];
}

export function isoOf(ms: number): string {
  return new Date(Math.round(ms)).toISOString();
}
