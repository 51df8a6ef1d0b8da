// Plans a FAT32 volume as data: the directory tree from file paths, short names, and one contiguous cluster run per node.
import { Img2vmError } from '../../core/errors.js';
import { formatSize, MiB } from '../../core/units.js';
import { ENTRY, longEntryCount } from './entries.js';
import { fat32Geometry, RESERVED_SECTORS, ROOT_CLUSTER, SECTOR, type Fat32Geometry } from './geometry.js';
import { assignShortNames, foldName, invalidLongName, type ShortName } from './names.js';

/** A file's bytes: in memory, or streamed once (a kernel, an initrd) with its size known up front. */
export type Fat32Content = Uint8Array | { size: number; read(): AsyncIterable<Uint8Array> };

export interface Fat32File {
  /** Relative to the root, '/'-separated, e.g. 'EFI/BOOT/BOOTX64.EFI'; directories on the way are made. */
  path: string;
  content: Fat32Content;
}

interface NodeBase {
  name: string;
  /** The path from the root, for messages. */
  path: string;
  short: ShortName;
  /** First cluster of the node's run; 0 for an empty file. */
  cluster: number;
  clusters: number;
}
export interface FileNode extends NodeBase {
  kind: 'file';
  size: number;
  content: Fat32Content;
}
export interface DirNode extends NodeBase {
  kind: 'dir';
  children: FatNode[];
  parent: DirNode | undefined;
  /** Directory entries, "." and ".." and the volume label included. */
  entries: number;
}
export type FatNode = FileNode | DirNode;

export interface Fat32Layout {
  geometry: Fat32Geometry;
  root: DirNode;
  /** Root first, then depth first in name order: the order their clusters are allocated in. */
  dirs: DirNode[];
  files: FileNode[];
  /** Clusters ROOT_CLUSTER .. ROOT_CLUSTER + used - 1 are allocated, every one of them. */
  used: number;
}

/** A FAT directory may hold 65536 entries (its offsets are 16-bit in some drivers; the specification says so). */
const MAX_DIR_ENTRIES = 65536;
/** FAT32 file sizes are 32-bit. */
const MAX_FILE_SIZE = 0xffffffff;

function contentSize(c: Fat32Content): number {
  return c instanceof Uint8Array ? c.length : c.size;
}

function badName(path: string, why: string): Img2vmError {
  return new Img2vmError(
    'badImage',
    `cannot write ${JSON.stringify(path)} to the EFI system partition: ${why}`,
    'ESP file names are made from the image (its kernel version, its loader entries); fix that name in the image',
  );
}

const NO_SHORT: ShortName = { bytes: Buffer.alloc(11), caseFlags: 0, long: false };

function newDir(name: string, path: string, parent: DirNode | undefined): DirNode {
  return { kind: 'dir', name, path, short: NO_SHORT, cluster: 0, clusters: 0, children: [], parent, entries: 0 };
}

/** Builds the tree, checking every name, and gives each directory's children their short names. */
function buildTree(
  files: readonly Fat32File[],
  hasLabel: boolean,
): { root: DirNode; dirs: DirNode[]; nodes: FatNode[] } {
  const root = newDir('', '', undefined);
  const index = new Map<DirNode, Map<string, FatNode>>([[root, new Map()]]);
  // In path order, so that when two paths spell one directory differently (FAT ignores case) the same one wins.
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const f of sorted) {
    const parts = f.path.replace(/^\/+/, '').split('/');
    let dir = root;
    parts.forEach((name, i) => {
      const path = parts.slice(0, i + 1).join('/');
      const why = invalidLongName(name);
      if (why !== undefined) throw badName(f.path, `the name ${JSON.stringify(name)} is not valid on FAT: ${why}`);
      const siblings = index.get(dir)!;
      const key = foldName(name);
      const existing = siblings.get(key);
      const last = i === parts.length - 1;
      if (last) {
        if (existing) throw badName(f.path, `${JSON.stringify(existing.path)} is there already (FAT ignores case)`);
        const size = contentSize(f.content);
        if (!Number.isSafeInteger(size) || size < 0 || size > MAX_FILE_SIZE)
          throw badName(f.path, `its size ${size} is not one FAT32 can store (at most 4 GiB - 1)`);
        const node: FileNode = {
          kind: 'file',
          name,
          path,
          short: NO_SHORT,
          cluster: 0,
          clusters: 0,
          size,
          content: f.content,
        };
        siblings.set(key, node);
        dir.children.push(node);
      } else if (existing) {
        if (existing.kind !== 'dir')
          throw badName(f.path, `${JSON.stringify(existing.path)} is a file, not a directory`);
        dir = existing;
      } else {
        const sub = newDir(name, path, dir);
        siblings.set(key, sub);
        index.set(sub, new Map());
        dir.children.push(sub);
        dir = sub;
      }
    });
  }

  // Name order, not input order, so that the same set of files gives the same bytes.
  const dirs: DirNode[] = [];
  const nodes: FatNode[] = [];
  const visit = (d: DirNode): void => {
    dirs.push(d);
    nodes.push(d);
    d.children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const shorts = assignShortNames(d.children.map((c) => c.name));
    d.entries = d === root ? (hasLabel ? 1 : 0) : 2;
    d.children.forEach((c, i) => {
      c.short = shorts[i]!;
      d.entries += (c.short.long ? longEntryCount(c.name.length) : 0) + 1;
    });
    if (d.entries > MAX_DIR_ENTRIES) {
      throw new Img2vmError(
        'badImage',
        `the ESP directory /${d.path} would need ${d.entries} entries; FAT allows ${MAX_DIR_ENTRIES}`,
        'put fewer files in one directory',
      );
    }
    for (const c of d.children) if (c.kind === 'dir') visit(c);
  };
  visit(root);
  for (const d of dirs) for (const c of d.children) if (c.kind === 'file') nodes.push(c);
  return { root, dirs, nodes };
}

function clustersOf(n: FatNode, clusterBytes: number): number {
  if (n.kind === 'dir') return Math.max(1, Math.ceil((n.entries * ENTRY) / clusterBytes));
  return Math.ceil(n.size / clusterBytes);
}

function clustersNeeded(nodes: readonly FatNode[], clusterBytes: number): number {
  return nodes.reduce((sum, n) => sum + clustersOf(n, clusterBytes), 0);
}

/** The smallest whole-MiB size whose FAT32 holds the nodes. */
function minimumSize(nodes: readonly FatNode[], from: number): number {
  // No geometry stores the data in fewer bytes than 512-byte clusters do, so the search can start from that.
  const lower = (clustersNeeded(nodes, SECTOR) + RESERVED_SECTORS) * SECTOR;
  let size = Math.ceil(Math.max(from, lower) / MiB) * MiB;
  for (;;) {
    const g = fat32Geometry(size);
    if (g && clustersNeeded(nodes, g.clusterBytes) <= g.clusterCount) return size;
    size += MiB;
  }
}

/** Plans the volume: throws sizeTooSmall (naming the size needed) when the files do not fit in `size` bytes. */
export function planFat32Layout(size: number, files: readonly Fat32File[], hasLabel: boolean): Fat32Layout {
  const { root, dirs, nodes } = buildTree(files, hasLabel);
  const geometry = fat32Geometry(size);
  const used = geometry ? clustersNeeded(nodes, geometry.clusterBytes) : Infinity;
  if (!geometry || used > geometry.clusterCount) {
    const need = minimumSize(nodes, size);
    const what = files.length === 0 ? 'FAT32 needs at least' : `its ${files.length} files need`;
    throw new Img2vmError(
      'sizeTooSmall',
      `the EFI system partition of ${formatSize(size)} is too small: ${what} ${formatSize(need)}`,
      `make the EFI system partition ${formatSize(need)} or larger`,
    );
  }
  let next = ROOT_CLUSTER;
  for (const n of nodes) {
    n.clusters = clustersOf(n, geometry.clusterBytes);
    n.cluster = n.clusters === 0 ? 0 : next;
    next += n.clusters;
  }
  const fileNodes = nodes.filter((n): n is FileNode => n.kind === 'file');
  return { geometry, root, dirs, files: fileNodes, used: next - ROOT_CLUSTER };
}
