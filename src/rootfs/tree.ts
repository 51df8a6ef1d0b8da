// The flattened root file system as data: a tree of nodes whose file contents live in a content store.
//
// Names, link targets and paths are "binary strings" (one char per byte, latin1), as everywhere in
// rootfs/, so names that are not UTF-8 survive exactly. A hard link is the same node object under
// more than one name; a file-system writer finds them by identity.

export type BinName = string;

/** A point in time with nanosecond precision; sec may be negative (before 1970). */
export interface Timestamp {
  sec: number;
  nsec: number;
}

export interface NodeMeta {
  /** Permission bits with setuid, setgid and sticky: mode & 0o7777. The type is the node's kind. */
  mode: number;
  uid: number;
  gid: number;
  mtime: Timestamp;
  /** Default: mtime. */
  atime?: Timestamp;
  /** Default: mtime. */
  ctime?: Timestamp;
  /**
   * Extended attributes by full name, values exactly as a layer or getxattr(2) carries them:
   * security.capability, security.selinux, user.*, trusted.*, and POSIX ACLs as
   * system.posix_acl_access / system.posix_acl_default in the xattr (not the ext4 on-disk) format.
   */
  xattrs: Map<string, Buffer>;
}

/** Opaque handle to a file's bytes in a ContentStore. */
export interface ContentRef {
  readonly store: ContentStore;
}

export interface FileNode {
  kind: 'file';
  meta: NodeMeta;
  /** Apparent size in bytes. */
  size: number;
  data: ContentRef;
}

export interface DirNode {
  kind: 'dir';
  meta: NodeMeta;
  entries: Map<BinName, Node>;
}

export interface SymlinkNode {
  kind: 'symlink';
  meta: NodeMeta;
  target: BinName;
}

export interface DeviceNode {
  kind: 'char' | 'block';
  meta: NodeMeta;
  major: number;
  minor: number;
}

export interface SpecialNode {
  kind: 'fifo' | 'socket';
  meta: NodeMeta;
}

export type Node = FileNode | DirNode | SymlinkNode | DeviceNode | SpecialNode;

/**
 * Where file contents go as layers stream in. A file-system writer is one (its data lands in the
 * disk image at once); a memory store serves tests and the small files img2vm generates.
 */
export interface ContentStore {
  /**
   * Stores a file's content as it streams in. size is the declared size: fewer or more bytes is an
   * error. All-zero 4 KiB blocks may be kept as holes.
   */
  put(chunks: AsyncIterable<Uint8Array>, size: number): Promise<ContentRef>;
  /**
   * Optional: as put(), for content given as data and holes, where a number n stands for n zero
   * bytes. A store that has it never sees a sparse file's holes as zeros (a 1 TB file with 4 KiB of
   * data is 4 KiB of work); without it, the flattener hands put() the holes as zeros.
   */
  putSparse?(parts: AsyncIterable<Uint8Array | number>, size: number): Promise<ContentRef>;
  /** Stores content already in memory. */
  putBuffer(data: Uint8Array): ContentRef;
  /** No node refers to ref any more (overwritten or whited out): its space may be reused. */
  release(ref: ContentRef): void;
  /** Reads the content back, in order, holes as zeros. */
  read(ref: ContentRef): AsyncIterable<Buffer>;
}

function refuse(): never {
  throw new TypeError('this map is shared by many nodes and cannot be changed; give the node a new one');
}

/**
 * Makes a map that many nodes share unchangeable in fact (a Map cannot be frozen): set, delete and
 * clear throw. Sharing is what keeps a tree of a million entries small.
 */
export function sealMap<K, V>(m: Map<K, V>): Map<K, V> {
  for (const k of ['set', 'delete', 'clear']) Object.defineProperty(m, k, { value: refuse, enumerable: false });
  return m;
}

/** The xattrs of every node that has none: one shared map (an empty Map per node cost about 180 bytes). */
export const NO_XATTRS: Map<string, Buffer> = sealMap(new Map<string, Buffer>());

/** A copy of a name that does not keep alive the string it was cut from. */
export function ownName(name: BinName): BinName {
  // V8 keeps a substring of 13 characters or more as a view into its parent, so a name cut from an
  // entry's path would hold the whole path (up to 4 KiB) for as long as the tree lives.
  return name.length < 13 ? name : Buffer.from(name, 'latin1').toString('latin1');
}
