// Finds the distribution of an image by reading /etc/os-release (or /usr/lib/os-release) out of its flattened layers.
import type { OsRelease } from '../core/plan.js';
import { Img2vmError } from '../core/errors.js';
import { LayerFlattener } from '../rootfs/layers.js';
import { MemoryStore } from '../rootfs/memory-store.js';
import type { RootTree } from '../rootfs/tree-edit.js';
import { binPath } from '../rootfs/tree-path.js';
import type { BinName } from '../rootfs/tree.js';
import type { SourceImage } from '../source/image.js';

export type { OsRelease } from '../core/plan.js';

/** os-release is a list of shell-style assignments; values may be quoted and use \ escapes inside quotes. */
export function parseOsRelease(text: string): OsRelease {
  const kv: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if (
      (v.startsWith('"') && v.endsWith('"') && v.length >= 2) ||
      (v.startsWith("'") && v.endsWith("'") && v.length >= 2)
    )
      v = v.slice(1, -1);
    kv[m[1]!] = v.replace(/\\(["$`\\])/g, '$1');
  }
  const lower = (v: string | undefined) => (v === undefined || v === '' ? undefined : v.toLowerCase());
  return {
    id: lower(kv.ID) ?? 'linux',
    idLike: (kv.ID_LIKE ?? '').toLowerCase().split(/\s+/).filter(Boolean),
    versionId: kv.VERSION_ID || undefined,
    versionCodename: lower(kv.VERSION_CODENAME),
    ubuntuCodename: lower(kv.UBUNTU_CODENAME),
    prettyName: kv.PRETTY_NAME || undefined,
  };
}

const CANDIDATES = ['/etc/os-release', '/usr/lib/os-release'];
/** Only small files are read: os-release is a few hundred bytes, anything large is not one. */
const MAX_FILE = 64 * 1024;

/** Which contents detection keeps while the layers stream by: small files named like os-release, nothing else. */
function osReleaseLike(path: BinName | undefined, size: number): boolean {
  return size <= MAX_FILE && path !== undefined && path.slice(path.lastIndexOf('/') + 1).includes('os-release');
}

/** The text of the regular file path names in the tree (symlinks followed inside it), if detection kept it. */
async function readKept(tree: RootTree, store: MemoryStore, path: string): Promise<string | undefined> {
  let node;
  try {
    node = tree.lookup(binPath(path));
  } catch (e) {
    // A symlink loop on the way: this is no os-release (the next candidate may be).
    if (e instanceof Img2vmError) return undefined;
    throw e;
  }
  if (node?.kind !== 'file' || node.size > MAX_FILE || !store.kept(node.data)) return undefined;
  return (await tree.readFile(binPath(path), { maxBytes: MAX_FILE }))?.toString('utf8');
}

/**
 * Reads os-release as the flattened image shows it; undefined for images without an OS (scratch). The layers are
 * flattened as the conversion flattens them (one whiteout and path policy, one resolver), with a store that keeps
 * the contents of nothing but os-release candidates: the tree of names costs memory, the files do not.
 */
export async function detectOs(img: SourceImage, signal?: AbortSignal): Promise<OsRelease | undefined> {
  // A daemon image answers for one file without its whole file system being read.
  if (img.readFile) {
    for (const c of CANDIDATES) {
      const text = await img.readFile(c);
      if (text) return parseOsRelease(text.toString('utf8'));
    }
    // os-release may be a symlink the archive endpoint does not follow: read the layers after all.
  }
  const store = new MemoryStore({ keep: osReleaseLike });
  const flattener = new LayerFlattener({ store, epoch: { sec: 0, nsec: 0 }, ...(signal ? { signal } : {}) });
  for (const layer of img.layers) await flattener.applyLayer(await layer.open());
  const { tree } = flattener.finish();
  for (const c of CANDIDATES) {
    const text = await readKept(tree, store, c);
    if (text !== undefined) return parseOsRelease(text);
  }
  return undefined;
}
