// Flattens image layers, in one pass and without privileges, into an in-memory tree whose file contents stream into a content store.
import { pipeline, Transform, type Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';
import { BlockCounter } from './blocks.js';
import { isCodecError, openLayer, type OpenedLayer } from './decompress.js';
import { aclAsText, checkDevice, entryKind, headerMeta, MetaCache, validXattrs, withAccessAcl } from './layer-meta.js';
import { ByteSource, holesAsZeros, TarFormatError, TarReader, type SparsePart, type TarHeader } from './tar.js';
import { RootTree, type Found } from './tree-edit.js';
import { maxEntries, MAX_NAME_BYTES, NAME_MAX, overLimit, WHITEOUT_PREFIX } from './limits.js';
import { resolveComponents, showPath, splitPath } from './tree-path.js';
import { treeStats, type TreeStats } from './tree-stats.js';
import type { BinName, ContentStore, DirNode, FileNode, Node, Timestamp } from './tree.js';

export type FlattenStats = TreeStats;

export interface FlattenProgress {
  /** The layer being applied, from 1. */
  layer: number;
  /** How many layers there are, when the caller said. */
  layers?: number;
  /** Bytes read from the layer streams so far (compressed, as they come from the source), over all layers. */
  bytesIn: number;
  /** The sum of the layer blobs' sizes, when the caller said. */
  bytesInTotal?: number;
  /** Tar entries read so far, over all layers. */
  entries: number;
}

export interface LayerFlattenerOptions {
  store: ContentStore;
  /** Default MAX_ENTRIES (src/rootfs/limits.ts), which IMG2VM_MAX_ENTRIES sets. */
  maxEntries?: number;
  /** mtime of directories made because a path needed them (and of the root until a layer sets it). */
  epoch: Timestamp;
  signal?: AbortSignal;
  onWarning?: (msg: string) => void;
  /** At most once per progressIntervalMs (default 250), and once more from finish(). */
  onProgress?: (p: FlattenProgress) => void;
  layers?: number;
  bytesInTotal?: number;
  progressIntervalMs?: number;
}

export interface Flattened {
  root: DirNode;
  stats: FlattenStats;
  /** The same tree, to keep editing it (img2vm's own files) with names counted and contents released right. */
  tree: RootTree;
}

const CORRUPT_HINT = 'the layer blob is truncated or damaged; pull the image again (--pull always)';
const WH = WHITEOUT_PREFIX;
const WH_META = '.wh..wh.';
const WH_OPAQUE = '.wh..wh..opq';
/** Files up to this size that are already buffered are copied into the store in one piece. */
const SMALL_FILE = 64 * 1024;

/**
 * Applies layer tars bottom-up onto a RootTree. Each layer is read once; a regular file's bytes go
 * to the store as they stream, so memory does not grow with file sizes. The store sees put() with
 * chunks that are valid until it pulls the next one (it writes or copies each), or, for small files
 * already decompressed, putBuffer() with a copy it may keep. It gets release() for every content
 * whose last name goes. A layer that fails leaves half a layer applied: the flattener then refuses
 * to go on, and the caller discards the store's content.
 *
 * Hostile-content policy, the only one (the runc builder's bundle and OS detection are made from
 * this tree too): paths resolve with chroot semantics (tree-path.ts); entries that cannot be given a
 * safe meaning inside the root are skipped with a warning (a hard link to a missing target or a
 * directory, a parent that is not a directory, a non-directory naming a directory with '..', a
 * whiteout of '.' or '..', an invalid symlink target, an xattr Linux would refuse); entries no Linux
 * file system can hold (a component over 255 bytes, a path of 4096 bytes or more, a symlink loop,
 * an id or device number out of range) and corrupt archives are badImage errors.
 */
export class LayerFlattener {
  private readonly tree: RootTree;
  private readonly store: ContentStore;
  private readonly signal: AbortSignal | undefined;
  private readonly warn: (msg: string) => void;
  /** MAX_ENTRIES as this run has it (IMG2VM_MAX_ENTRIES, read once, when the flattener is made). */
  private readonly maxEntries: number;
  /** Entries (directory, name) the current layer wrote, and their ancestors: a whiteout hides lower layers only. */
  private marks = new Map<DirNode, Set<BinName>>();
  /** Metadata shared between entries that have the same. */
  private readonly metas = new MetaCache();
  private whiteouts = 0;
  private layerNo = 0;
  private bytesIn = 0;
  private entries = 0;
  private lastProgress = -Infinity;
  private busy = false;
  private finished = false;
  private failed = false;

  constructor(private readonly opts: LayerFlattenerOptions) {
    this.maxEntries = opts.maxEntries ?? maxEntries();
    this.store = opts.store;
    this.tree = new RootTree({ store: opts.store, epoch: opts.epoch });
    this.signal = opts.signal;
    this.warn = opts.onWarning ?? (() => {});
  }

  /** Applies one layer blob (tar, gzip or zstd); layers must come bottom-up, one at a time. */
  async applyLayer(stream: NodeJS.ReadableStream | Readable): Promise<void> {
    if (this.finished) throw new Error('LayerFlattener.applyLayer called after finish()');
    if (this.busy) throw new Error('LayerFlattener.applyLayer called while another layer is being applied');
    if (this.failed) throw new Error('LayerFlattener.applyLayer called after a layer failed');
    this.busy = true;
    this.layerNo++;
    const signal = this.signal;
    let layer: OpenedLayer | undefined;
    const counted = this.counting(stream);
    // Every way out destroys the source itself too, so no read of it is left pending when this returns.
    const stop = (reason?: unknown): void => {
      layer?.destroy(reason);
      counted.destroy();
      const d = (stream as Partial<Readable>).destroy;
      if (typeof d === 'function') d.call(stream);
    };
    const onAbort = (): void => stop(signal?.reason);
    try {
      signal?.throwIfAborted();
      signal?.addEventListener('abort', onAbort, { once: true });
      layer = await openLayer(counted, signal);
      signal?.throwIfAborted();
      const tar = new TarReader(new ByteSource(layer.chunks));
      for (;;) {
        const h = await tar.next();
        if (h === null) break;
        signal?.throwIfAborted();
        this.entries++;
        await this.applyEntry(h, tar);
        this.checkLimits(h);
        this.progress(false);
      }
    } catch (e) {
      this.failed = true;
      stop(e);
      throw this.classify(e, layer);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await layer?.dispose();
      this.marks = new Map();
      this.busy = false;
    }
  }

  finish(): Flattened {
    if (this.busy) throw new Error('LayerFlattener.finish called while a layer is being applied');
    if (this.finished) throw new Error('LayerFlattener.finish called twice');
    if (this.failed) throw new Error('LayerFlattener.finish called after a layer failed');
    this.finished = true;
    this.progress(true);
    return { root: this.tree.root, stats: treeStats(this.tree, this.whiteouts), tree: this.tree };
  }

  /** The source as a stream that counts its bytes; destroying it destroys the source (no read is left pending). */
  private counting(stream: NodeJS.ReadableStream | Readable): Transform {
    const t = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        this.bytesIn += chunk.length;
        this.progress(false);
        cb(null, chunk);
      },
    });
    pipeline(stream, t, () => {});
    return t;
  }

  private progress(force: boolean): void {
    const on = this.opts.onProgress;
    if (!on) return;
    const now = performance.now();
    if (!force && now - this.lastProgress < (this.opts.progressIntervalMs ?? 250)) return;
    this.lastProgress = now;
    const p: FlattenProgress = { layer: this.layerNo, bytesIn: this.bytesIn, entries: this.entries };
    if (this.opts.layers !== undefined) p.layers = this.opts.layers;
    if (this.opts.bytesInTotal !== undefined) p.bytesInTotal = this.opts.bytesInTotal;
    on(p);
  }

  private classify(e: unknown, layer: OpenedLayer | undefined): unknown {
    if (this.signal?.aborted) return this.signal.reason;
    if (e instanceof Img2vmError) return e;
    if (e instanceof TarFormatError)
      return new Img2vmError('badImage', `layer is corrupt: ${e.message}`, CORRUPT_HINT, { cause: e });
    if (isCodecError(e) && !layer?.isSourceError(e)) {
      return new Img2vmError(
        'badImage',
        `layer is corrupt: ${layer?.compression ?? 'decompression'}: ${e.message}`,
        CORRUPT_HINT,
        { cause: e },
      );
    }
    return e;
  }

  /** The tree may not outgrow the caps on what it holds in memory (limits.ts). */
  private checkLimits(h: TarHeader): void {
    const t = this.tree;
    if (t.entries > this.maxEntries) {
      throw overLimit(
        'MAX_ENTRIES',
        this.maxEntries,
        `the image has more than ${this.maxEntries} files, directories and links (at "${showPath(h.path)}" in layer ${this.layerNo})`,
        `the cap bounds img2vm's memory (about 300 MB at the default 500,000); for a bigger image set IMG2VM_MAX_ENTRIES to the entries it has (about 400 bytes of memory each), or make the image smaller (fewer files)`,
      );
    }
    if (t.nameBytes > MAX_NAME_BYTES) {
      throw overLimit(
        'MAX_NAME_BYTES',
        MAX_NAME_BYTES,
        `the image's names and symlink targets take more than ${MAX_NAME_BYTES} bytes (at "${showPath(h.path)}" in layer ${this.layerNo})`,
      );
    }
  }

  // ---- one entry ----

  private async applyEntry(h: TarHeader, tar: TarReader): Promise<void> {
    const comps = splitPath(h.path, WH);
    // aufs metadata (.wh..wh.plnk, .wh..wh.aufs ...) and anything beneath it: not image content.
    for (let i = 0; i < comps.length - 1; i++) if (comps[i]!.startsWith(WH_META)) return;
    const last = comps[comps.length - 1];
    if (last !== undefined && last.startsWith(WH)) {
      this.whiteout(comps.slice(0, -1), last, h);
      return;
    }
    if (h.type === 'unknown') {
      this.warn(`skipping "${showPath(h.path)}": unsupported tar entry type '${h.typeflag}'`);
      return;
    }
    if (h.type === 'char' || h.type === 'block') checkDevice(h);
    if (h.type === 'symlink' && (h.linkpath === '' || h.linkpath.includes('\0') || h.linkpath.length >= 4096)) {
      this.warn(`skipping symlink "${showPath(h.path)}": its target is empty or invalid`);
      return;
    }
    // A hard link's target is looked up before anything is made for the link itself.
    let target: { node: Exclude<Node, DirNode>; at: Found } | undefined;
    if (h.type === 'link') {
      target = this.linkTarget(h);
      if (!target) return;
    }
    const meta = h.type === 'link' ? undefined : headerMeta(h, this.warn, entryKind(h.type), this.metas);

    const r = resolveComponents(this.tree.root, comps, h.path, this.tree.creating);
    if (!r.ok) {
      this.warn(`skipping "${showPath(h.path)}": "/${showPath(r.at)}" is not a directory`);
      return;
    }
    if (r.name === null) {
      // The path names an existing directory ("./", "a/.."): only a directory entry means something here.
      if (h.type === 'dir') {
        (r.node as DirNode).meta = meta!;
        this.mark(r);
      } else
        this.warn(
          `skipping "${showPath(h.path)}": a ${h.type} entry cannot replace the directory "/${showPath(r.names.join('/'))}"`,
        );
      return;
    }
    const existing = r.node;

    switch (h.type) {
      case 'dir':
        if (existing?.kind === 'dir') existing.meta = meta!;
        else this.tree.place(r, { kind: 'dir', meta: meta!, entries: new Map() });
        break;
      case 'file': {
        this.tree.detachAt(r); // first, so that a store can reuse the old content's space
        const node = await this.storeFile(h, tar, meta!);
        this.tree.place(r, node);
        break;
      }
      case 'symlink':
        this.tree.place(r, { kind: 'symlink', meta: meta!, target: h.linkpath });
        break;
      case 'link': {
        const t = target!;
        if (existing !== t.node) {
          if (existing?.kind === 'dir' && t.at.dirs.includes(existing)) {
            // Replacing the directory takes the target with it (a link into the tree it replaces).
            this.tree.detachAt(r);
            this.warn(`skipping hardlink "${showPath(h.path)}": its target "${showPath(h.linkpath)}" no longer exists`);
            return;
          }
          this.tree.placeLink(r, t.node);
        }
        // The other metadata belongs to the shared inode; xattrs are added to it, as setxattr on the link would (an access ACL with its mode).
        const added = validXattrs(h, this.warn, entryKind(t.node.kind));
        if (added.size > 0) {
          const m = t.node.meta;
          const set = withAccessAcl(m.mode, new Map([...m.xattrs, ...added]), added, aclAsText(h));
          t.node.meta = Object.freeze({ ...m, mode: set.mode, xattrs: this.metas.xattrs(set.xattrs, h.path) });
        }
        break;
      }
      case 'fifo':
        this.tree.place(r, { kind: 'fifo', meta: meta! });
        break;
      case 'char':
      case 'block':
        this.tree.place(r, { kind: h.type, meta: meta!, major: h.devmajor, minor: h.devminor });
        break;
    }
    this.mark(r);
  }

  private linkTarget(h: TarHeader): { node: Exclude<Node, DirNode>; at: Found } | undefined {
    const skip = (why: string): undefined => {
      this.warn(`skipping hardlink "${showPath(h.path)}" → "${showPath(h.linkpath)}": ${why}`);
      return undefined;
    };
    const t = resolveComponents(this.tree.root, splitPath(h.linkpath), h.linkpath);
    if (!t.ok || (t.name !== null && !t.node)) return skip('the target does not exist');
    if (t.name === null || t.node?.kind === 'dir') return skip('the target is a directory');
    return { node: t.node!, at: t };
  }

  private async storeFile(h: TarHeader, tar: TarReader, meta: FileNode['meta']): Promise<FileNode> {
    const blocks = new BlockCounter();
    let data: FileNode['data'];
    // A small file already in the decompressed buffer is stored at once: streaming costs more than copying it.
    const whole = h.size <= SMALL_FILE ? tar.takeBufferedData() : null;
    if (whole) {
      blocks.add(whole);
      data = this.store.putBuffer(Buffer.from(whole), h.path);
    } else if (h.sparse) {
      data = await this.storeSparse(h, tar, blocks);
    } else {
      const signal = this.signal;
      let readError: unknown;
      const chunks = async function* (): AsyncGenerator<Buffer, void, undefined> {
        try {
          for await (const c of tar.data()) {
            signal?.throwIfAborted();
            blocks.add(c);
            yield c;
          }
        } catch (e) {
          // Aborting destroys the source, which then looks truncated: the abort is the reason.
          readError = signal?.aborted ? signal.reason : e;
          throw readError;
        }
      };
      try {
        data = await this.store.put(chunks(), h.size, h.path);
      } catch (e) {
        // A store may wrap what the layer threw; the layer's own error says what went wrong.
        throw readError ?? e;
      }
    }
    const node: FileNode = { kind: 'file', meta, size: h.size, data };
    this.tree.setDataBlocks(node, blocks.blocks);
    return node;
  }

  /** A sparse file's data at its offsets; its holes are handed on as holes where the store takes them, else as zeros. */
  private async storeSparse(h: TarHeader, tar: TarReader, blocks: BlockCounter): Promise<FileNode['data']> {
    const signal = this.signal;
    let readError: unknown;
    const parts = async function* (): AsyncGenerator<SparsePart, void, undefined> {
      try {
        for await (const p of tar.parts()) {
          signal?.throwIfAborted();
          if (typeof p === 'number') blocks.skip(p);
          else blocks.add(p);
          yield p;
        }
      } catch (e) {
        readError = signal?.aborted ? signal.reason : e;
        throw readError;
      }
    };
    try {
      const store = this.store;
      return store.putSparse
        ? await store.putSparse(parts(), h.size, h.path)
        : await store.put(holesAsZeros(parts()), h.size, h.path);
    } catch (e) {
      throw readError ?? e;
    }
  }

  // ---- whiteouts ----

  private whiteout(parentComps: string[], last: string, h: TarHeader): void {
    if (last !== WH_OPAQUE && last.startsWith(WH_META)) return; // other aufs metadata
    const name = last === WH_OPAQUE ? null : last.slice(WH.length);
    if (name === '' || name === '.' || name === '..') {
      this.warn(`ignoring whiteout "${showPath(h.path)}": it names no entry`);
      return;
    }
    if (name !== null && name.length > NAME_MAX) {
      // No layer below can have made such a name (it is refused there), so there is nothing to hide.
      this.warn(
        `ignoring whiteout "${showPath(h.path)}": it hides a name of ${name.length} bytes, and no Linux file has a name over ${NAME_MAX}`,
      );
      return;
    }
    this.whiteouts++;
    // The bottom layer has nothing below it to hide (and keeps no marks: they would cost memory per entry).
    if (this.layerNo === 1) return;
    // A whiteout never creates anything: a missing parent means there is nothing to hide.
    const r = resolveComponents(this.tree.root, parentComps, h.path, { followLast: true });
    if (!r.ok || r.node?.kind !== 'dir') return;
    const dir = r.node;
    if (name === null) for (const child of [...dir.entries.keys()]) this.pruneLower(dir, child);
    else this.pruneLower(dir, name);
  }

  /** Removes what lower layers put at dir/name, keeping what the current layer wrote (and the directories holding it). */
  private pruneLower(dir: DirNode, name: BinName): void {
    const stack: [DirNode, BinName][] = [[dir, name]];
    for (let e = stack.pop(); e; e = stack.pop()) {
      const [d, n] = e;
      const node = d.entries.get(n);
      if (!node) continue;
      if (!this.marks.get(d)?.has(n)) this.tree.removeEntry(d, n);
      else if (node.kind === 'dir') for (const c of node.entries.keys()) stack.push([node, c]);
    }
  }

  /** Marks the entry r names and its real ancestors as written by this layer (above the bottom one, which whiteouts cannot touch). */
  private mark(r: Found): void {
    if (this.layerNo === 1) return;
    const set = (d: DirNode, n: BinName): boolean => {
      let s = this.marks.get(d);
      if (!s) this.marks.set(d, (s = new Set()));
      if (s.has(n)) return false;
      s.add(n);
      return true;
    };
    if (r.name !== null && !set(r.dirs[r.dirs.length - 1]!, r.name)) return;
    for (let i = r.names.length - 1; i >= 0; i--) if (!set(r.dirs[i]!, r.names[i]!)) break;
  }
}
