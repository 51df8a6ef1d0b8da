// Helpers for the tree flattener's tests: apply generated layers into a MemoryStore and read the tree back.
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import { LayerFlattener, type Flattened, type LayerFlattenerOptions } from '../../src/rootfs/layers.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { binPath, resolvePath } from '../../src/rootfs/tree-path.js';
import type { DirNode, Node, Timestamp } from '../../src/rootfs/tree.js';

export const EPOCH: Timestamp = { sec: 1_000_000_000, nsec: 0 };

export interface Result extends Flattened {
  store: MemoryStore;
  warnings: string[];
}

export async function flattenLayers(layers: Buffer[], opts: Partial<LayerFlattenerOptions> = {}): Promise<Result> {
  const store = (opts.store as MemoryStore | undefined) ?? new MemoryStore();
  const warnings: string[] = [];
  const f = new LayerFlattener({ epoch: EPOCH, onWarning: (w) => warnings.push(w), ...opts, store });
  for (const l of layers) await f.applyLayer(Readable.from([l]));
  return { ...f.finish(), store, warnings };
}

/** The node a path names, the final component not followed (UTF-8 path as given in a test). */
export function at(root: DirNode, path: string): Node | undefined {
  const r = resolvePath(root, binPath(path));
  return r.ok ? r.node : undefined;
}

export function must(root: DirNode, path: string): Node {
  const n = at(root, path);
  expect(n, `expected "${path}" in the tree`).toBeDefined();
  return n!;
}

export function dir(root: DirNode, path: string): DirNode {
  const n = must(root, path);
  expect(n.kind, path).toBe('dir');
  return n as DirNode;
}

/** Names in a directory, sorted, as UTF-8. */
export function ls(root: DirNode, path = ''): string[] {
  return [...dir(root, path).entries.keys()].map((k) => Buffer.from(k, 'latin1').toString('utf8')).sort();
}

export async function bytes(root: DirNode, path: string): Promise<Buffer> {
  const n = must(root, path);
  expect(n.kind, path).toBe('file');
  if (n.kind !== 'file') throw new Error('not a file');
  const parts: Buffer[] = [];
  for await (const c of n.data.store.read(n.data)) parts.push(c);
  const b = Buffer.concat(parts);
  expect(b.length).toBe(n.size);
  return b;
}

export async function text(root: DirNode, path: string): Promise<string> {
  return (await bytes(root, path)).toString('utf8');
}

/** Every path in the tree with its kind, sorted: a compact picture of a whole tree. */
export function paths(root: DirNode): string[] {
  const out: string[] = [];
  const walk = (d: DirNode, prefix: string): void => {
    for (const [name, n] of d.entries) {
      const p = prefix + Buffer.from(name, 'latin1').toString('utf8');
      out.push(`${p} ${n.kind}${n.kind === 'symlink' ? ` → ${n.target}` : ''}`);
      if (n.kind === 'dir') walk(n, `${p}/`);
    }
  };
  walk(root, '');
  return out.sort();
}

/** The files (distinct nodes) left in a tree: what a store must still hold. */
export function fileNodes(root: DirNode): Set<Node> {
  const s = new Set<Node>();
  const stack = [root];
  for (let d = stack.pop(); d; d = stack.pop()) {
    for (const n of d.entries.values()) {
      if (n.kind === 'file') s.add(n);
      else if (n.kind === 'dir') stack.push(n);
    }
  }
  return s;
}

/** Live references of the store are exactly the contents of the tree's files. */
export function expectExactRefs(r: Result): void {
  const inTree = new Set([...fileNodes(r.root)].map((n) => (n.kind === 'file' ? n.data : undefined)));
  expect(new Set(r.store.liveRefs())).toEqual(inTree);
  expect(r.store.puts - r.store.releases).toBe(inTree.size);
}

/** A ustar header block made directly (fast enough for 100,000 entries: only the fields that vary are written). */
export function ustar(name: string, size: number, typeflag = '0', mode = 0o644): Buffer {
  const b = Buffer.from(USTAR_TEMPLATE);
  b.write(name, 0, 100, 'latin1');
  b.write(`${mode.toString(8).padStart(7, '0')}\0`, 100, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write(typeflag, 156, 'latin1');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

const USTAR_TEMPLATE = ((): Buffer => {
  const b = Buffer.alloc(512);
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write('13000000000\0', 136, 'latin1');
  b.write('ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  return b;
})();
