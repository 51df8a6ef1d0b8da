// Ext4Writer: a content store whose data lands in the file system at once, and finish(), which writes the rest in one pass.
import { Img2vmError } from '../../core/errors.js';
import { formatSize } from '../../core/units.js';
import type { ContentRef, ContentStore, DirNode, FileNode } from '../../rootfs/tree.js';
import type { BlockTarget } from '../target.js';
import { Allocator } from './alloc.js';
import { BatchWriter } from './batch.js';
import { checkFileSize, Ext4Ref, FileSink, readRef, refKinds, type RefMaker } from './content.js';
import { DirHasher } from './dirhash.js';
import { finalize } from './finalize.js';
import { BLOCK, DESCS_PER_BLOCK, GDT_SPAN, MAX_BLOCKS, trimBlocks } from './geometry.js';
import { writeInodeTables } from './itable.js';
import { buildExtentTree } from './extents.js';
import {
  chooseJournal,
  geometryFor,
  journalExtents,
  MAX_JOURNAL_BLOCKS,
  minimumBlocks,
  placeFixed,
  type Demand,
  type Geometry,
} from './layout.js';
import { MIN_JOURNAL_BLOCKS } from './journal.js';
import { planTree, type TreePlan } from './plan.js';
import { fsChecksumSeed } from './super.js';

export interface Ext4WriterOptions {
  target: BlockTarget;
  /** Byte offset of the file system in the target; a multiple of 4096. */
  offset: number;
  /** If set, data allocation past this size fails with sizeTooSmall (a fixed --size). */
  maxBytes?: number;
  uuid: string;
  /** Volume label, at most 16 bytes. */
  label: string;
  /** Directory hash seed, a UUID string. */
  hashSeed: string;
  /** Seconds: every time the file system records of itself (creation, write, lost+found, reserved inodes, crtime). */
  epoch: number;
}

export interface Ext4FinishOptions {
  sizeBytes: number;
  inodeCount: number;
  /** Journal size; default 16/32/64 MiB by file-system size (smaller if the default does not fit). */
  journalBytes?: number;
  /** Stops between the passes and while contents are copied in (the metadata passes themselves are bounded). */
  signal?: AbortSignal;
}

export interface Ext4Measure {
  /** Inodes the tree needs, counting the 11 reserved ones (the highest inode number). */
  inodes: number;
  /** Blocks of file data already written that the tree uses. */
  dataBlocks: number;
  /** Blocks (at most) for content that finish copies in from other stores. */
  copyBlocks: number;
  /** Directory, symlink, xattr, extent-tree and resize blocks finish writes (upper bound). */
  metadataBlocks: number;
  /** First never-used block: everything finish places goes after it. */
  dataEndBlock: number;
  /** Released blocks below dataEndBlock that finish reuses. */
  freeBlocks: number;
  /** The smallest sizeBytes finish accepts with inodeCount inodes (default: just the tree's). */
  minimumBytes(inodeCount?: number, journalBytes?: number): number;
}

export interface Ext4Summary {
  sizeBytes: number;
  blocks: number;
  groups: number;
  inodes: number;
  inodesPerGroup: number;
  usedInodes: number;
  freeBlocks: number;
  freeInodes: number;
  journalBytes: number;
  reservedGdtBlocks: number;
  /** Bytes and write calls handed to the target over the writer's life. */
  bytesWritten: number;
  writes: number;
}

export function parseUuid(s: string, what: string): Buffer {
  const hex = s.replace(/-/g, '');
  if (
    !/^[0-9a-fA-F]{32}$/.test(hex) ||
    !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s)
  ) {
    throw new Img2vmError('usage', `${what} "${s}" is not a UUID`, 'give it as 8-4-4-4-12 hexadecimal digits');
  }
  return Buffer.from(hex, 'hex');
}

export class Ext4Writer implements ContentStore {
  private readonly target: BlockTarget;
  private readonly base: number;
  private readonly alloc: Allocator;
  private readonly batch: BatchWriter;
  private readonly uuid: Buffer;
  private readonly label: Buffer;
  private readonly hashSeed: Buffer;
  private readonly fsSeed: number;
  private readonly hasher: DirHasher;
  private readonly epoch: number;
  private readonly maxBytes: number | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private finished = false;
  /** Declared size of the file being stored and blocks held by stored files, for the message when contents do not fit. */
  private storing = 0;
  private held = 0;
  /**
   * Refs stored with data blocks, in the order stored: those the tree does not use are freed at
   * finish. Released ones leave lazily (a list costs 8 bytes a file, a set about 30).
   */
  private live: Ext4Ref[] = [];
  private liveReleased = 0;
  private readonly makeRef: RefMaker = refKinds(this);

  constructor(o: Ext4WriterOptions) {
    if (!Number.isSafeInteger(o.offset) || o.offset < 0 || o.offset % BLOCK !== 0) {
      throw new Img2vmError(
        'usage',
        `file-system offset ${o.offset} is not a multiple of 4096`,
        'align the partition to 4 KiB',
      );
    }
    if (!Number.isFinite(o.epoch))
      throw new Img2vmError('usage', `epoch ${o.epoch} is not a time`, 'give seconds since 1970');
    this.target = o.target;
    this.base = o.offset;
    this.uuid = parseUuid(o.uuid, 'file-system UUID');
    this.hashSeed = parseUuid(o.hashSeed, 'directory hash seed');
    this.label = Buffer.from(o.label, 'utf8');
    if (this.label.length > 16)
      throw new Img2vmError('usage', `file-system label "${o.label}" is longer than 16 bytes`, 'use a shorter label');
    this.epoch = Math.trunc(o.epoch);
    this.maxBytes = o.maxBytes;
    this.fsSeed = fsChecksumSeed(this.uuid);
    this.hasher = new DirHasher(this.hashSeed, true);
    const limit = o.maxBytes === undefined ? MAX_BLOCKS : Math.min(MAX_BLOCKS, Math.floor(o.maxBytes / BLOCK));
    this.alloc = new Allocator(limit, () => this.full());
    this.batch = new BatchWriter(this.target, this.base);
  }

  private full(): never {
    if (this.maxBytes !== undefined && this.alloc.limit < MAX_BLOCKS && !this.finished) {
      throw new Img2vmError(
        'sizeTooSmall',
        `the file contents alone need more than the root file system's ${formatSize(this.maxBytes)}: ${formatSize(this.held * BLOCK)} are stored and a file of ${formatSize(this.storing)} does not fit`,
        'give a larger --size, or leave --size out to fit the content',
      );
    }
    throw new Img2vmError(
      'usage',
      `the content is larger than the ext4 writer supports (${formatSize(MAX_BLOCKS * BLOCK)})`,
      'the image is too large for one file system',
    );
  }

  private isOurs = (r: unknown): r is Ext4Ref => r instanceof Ext4Ref && r.store === this;

  private open(): void {
    if (this.finished) throw new Error('the ext4 writer has finished; it takes no more content');
  }

  put(chunks: AsyncIterable<Uint8Array>, size: number): Promise<ContentRef> {
    // One file at a time, in call order: allocation, and so the image, depends only on the order of puts.
    const run = this.tail.then(() => this.putNow(chunks, size));
    this.tail = run.catch(() => undefined);
    return run;
  }

  putSparse(parts: AsyncIterable<Uint8Array | number>, size: number): Promise<ContentRef> {
    const run = this.tail.then(() => this.putNow(parts, size));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async putNow(chunks: AsyncIterable<Uint8Array | number>, size: number): Promise<Ext4Ref> {
    this.open();
    checkFileSize(size);
    this.storing = size;
    const sink = new FileSink(this.makeRef, this.alloc, this.batch, size);
    try {
      for await (const c of chunks) {
        if (typeof c === 'number') sink.skip(c);
        else sink.feed(c);
      }
      return this.stored(sink.end());
    } catch (e) {
      sink.abort();
      throw e;
    }
  }

  putBuffer(data: Uint8Array): ContentRef {
    this.open();
    checkFileSize(data.length);
    this.storing = data.length;
    const sink = new FileSink(this.makeRef, this.alloc, this.batch, data.length);
    try {
      return this.stored(sink.whole(data));
    } catch (e) {
      sink.abort();
      throw e;
    }
  }

  private stored(ref: Ext4Ref): Ext4Ref {
    const n = ref.blocks;
    this.held += n;
    // A ref without blocks (an empty file, holes only) has nothing to free.
    if (n > 0) this.live.push(ref);
    return ref;
  }

  private freeRef(ref: Ext4Ref): void {
    ref.release();
    const n = ref.blocks;
    this.held -= n;
    const e = ref.extents;
    for (let i = 0; i < e.length; i += 3) this.alloc.free(e[i + 1]!, e[i + 2]!);
    if (n > 0 && ++this.liveReleased > 1024 && this.liveReleased * 2 > this.live.length) {
      this.live = this.live.filter((r) => !r.released);
      this.liveReleased = 0;
    }
  }

  release(ref: ContentRef): void {
    if (!this.isOurs(ref)) {
      ref.store.release(ref);
      return;
    }
    if (ref.released || this.finished) return;
    this.freeRef(ref);
  }

  read(ref: ContentRef): AsyncIterable<Buffer> {
    if (!this.isOurs(ref)) return ref.store.read(ref);
    if (ref.released) throw new Error('reading content that was released');
    this.batch.flush();
    return readRef(ref, this.target, this.base);
  }

  private demand(plan: TreePlan): Demand {
    // Content stored but used by no node is freed at finish, so it counts as free space.
    const unused = this.held - plan.dataBlocks;
    return {
      cursor: this.alloc.cursor,
      free: this.alloc.freeBlocks + unused,
      variable: plan.metadataBlocks + plan.copyBlocks,
      usedInodes: plan.lastIno,
    };
  }

  measure(root: DirNode): Ext4Measure {
    const plan = planTree(root, this.epoch, this.hasher, this.isOurs);
    const d = this.demand(plan);
    return {
      inodes: plan.lastIno,
      dataBlocks: plan.dataBlocks,
      copyBlocks: plan.copyBlocks,
      metadataBlocks: plan.metadataBlocks,
      dataEndBlock: d.cursor,
      freeBlocks: d.free,
      minimumBytes: (inodeCount = plan.lastIno, journalBytes?: number) =>
        minimumBlocks(d, inodeCount, journalBlocksOf(journalBytes)) * BLOCK,
    };
  }

  /**
   * Writes everything but the data: inodes, directories, xattrs, extent trees, bitmaps, descriptors,
   * superblocks, journal and resize inode. A size or inode count it refuses (sizeTooSmall, usage)
   * is refused before anything is written, so finish may be called again with other options.
   */
  async finish(root: DirNode, o: Ext4FinishOptions): Promise<Ext4Summary> {
    await this.tail;
    this.open();
    // Everything up to the first write is checked first: a refused size leaves the writer usable.
    const plan = planTree(root, this.epoch, this.hasher, this.isOurs);
    const { blocks, geo, jb } = this.shapeFor(plan, o);

    // Content stored for no node of the tree (overwritten files the flattener did not release) is freed.
    const live = this.live;
    this.live = [];
    for (const ref of live) if (!ref.released && ref.mark !== plan.mark) this.freeRef(ref);
    this.finished = true;
    const dataEnd = this.alloc.cursor;
    this.alloc.limit = blocks;
    const fixed = placeFixed(this.alloc, geo, jb);
    const resizeDind = this.alloc.alloc();
    const copied = new Map<FileNode, Ext4Ref>();
    for (const node of plan.copies) {
      o.signal?.throwIfAborted();
      copied.set(node, await this.copyIn(node));
    }
    o.signal?.throwIfAborted();
    const reservedGdtBlocks = GDT_SPAN - Math.ceil(geo.groups / DESCS_PER_BLOCK);
    const pass = {
      plan,
      geo,
      fixed,
      alloc: this.alloc,
      batch: this.batch,
      fsSeed: this.fsSeed,
      hasher: this.hasher,
      epoch: this.epoch,
      ours: this.isOurs,
      refOf: (n: FileNode): Ext4Ref => copied.get(n) ?? (n.data as Ext4Ref),
      reservedGdtBlocks,
      resizeDind,
    };
    const usedDirs = writeInodeTables(pass);
    o.signal?.throwIfAborted();
    this.zeroStale(dataEnd);
    const journalIBlock = buildExtentTree(journalExtents(fixed), () => 0, 0).root;
    const counts = finalize({
      geo,
      fixed,
      alloc: this.alloc,
      batch: this.batch,
      fsSeed: this.fsSeed,
      lastIno: plan.lastIno,
      usedDirs,
      reservedGdtBlocks,
      resizeDind,
      journalBlocks: jb,
      journalIBlock,
      uuid: this.uuid,
      label: this.label,
      hashSeed: this.hashSeed,
      epoch: this.epoch,
    });
    const end = this.base + blocks * BLOCK;
    if (this.target.size() < end) this.target.resize(end);
    return {
      sizeBytes: blocks * BLOCK,
      blocks,
      groups: geo.groups,
      inodes: counts.inodes,
      inodesPerGroup: geo.inodesPerGroup,
      usedInodes: plan.lastIno,
      freeBlocks: counts.freeBlocks,
      freeInodes: counts.freeInodes,
      journalBytes: jb * BLOCK,
      reservedGdtBlocks,
      bytesWritten: this.batch.written,
      writes: this.batch.writes,
    };
  }

  /** The file system's blocks, geometry and journal for a plan and the options, or the reason it cannot be made. */
  private shapeFor(plan: TreePlan, o: Ext4FinishOptions): { blocks: number; geo: Geometry; jb: number } {
    const d = this.demand(plan);
    const jWanted = journalBlocksOf(o.journalBytes);
    const need = (): string => formatSize(minimumBlocks(d, Math.max(o.inodeCount, plan.lastIno), jWanted) * BLOCK);
    if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes <= 0 || o.sizeBytes > MAX_BLOCKS * BLOCK) {
      throw new Img2vmError(
        'usage',
        `a root file system of ${o.sizeBytes} bytes is outside what the ext4 writer makes (up to ${formatSize(MAX_BLOCKS * BLOCK)})`,
        'use a smaller --size',
      );
    }
    if (!Number.isSafeInteger(o.inodeCount) || o.inodeCount < plan.lastIno) {
      throw new Img2vmError(
        'sizeTooSmall',
        `the root file system needs ${plan.lastIno} inodes, ${o.inodeCount} were planned`,
        'this is a planning error: plan at least as many inodes as the tree has entries',
      );
    }
    const blocks = trimBlocks(Math.floor(o.sizeBytes / BLOCK));
    const geo = geometryFor(blocks, o.inodeCount);
    if (!geo)
      throw new Img2vmError(
        'sizeTooSmall',
        `${o.inodeCount} inodes need a root file system of at least ${need()}, not ${formatSize(o.sizeBytes)}`,
        'give a larger --size',
      );
    const jb = chooseJournal(d, geo, jWanted);
    if (jb === undefined)
      throw new Img2vmError(
        'sizeTooSmall',
        `the root file system (${formatSize(o.sizeBytes)}) is too small for the image content: it needs ${need()}`,
        'give a larger --size, or leave --size out to fit the content',
      );
    return { blocks, geo, jb };
  }

  private async copyIn(node: FileNode): Promise<Ext4Ref> {
    const src = node.data;
    const sink = new FileSink(this.makeRef, this.alloc, this.batch, node.size);
    this.batch.flush();
    const chunks = this.isOurs(src) ? readRef(src, this.target, this.base) : src.store.read(src);
    for await (const c of chunks) sink.feed(c);
    return sink.end();
  }

  /** Freed data blocks that stay free are zeroed, so deleted files' bytes do not survive in the image. */
  private zeroStale(dataEnd: number): void {
    const zero = Buffer.alloc(BLOCK);
    for (const [s, n] of this.alloc.freeRuns()) {
      for (let b = s; b < Math.min(s + n, dataEnd); b++) this.batch.block(b, zero);
    }
  }
}

function journalBlocksOf(bytes: number | undefined): number | undefined {
  if (bytes === undefined) return undefined;
  const jb = Math.ceil(bytes / BLOCK);
  if (!Number.isSafeInteger(jb) || jb < MIN_JOURNAL_BLOCKS || jb > MAX_JOURNAL_BLOCKS) {
    throw new Img2vmError(
      'usage',
      `a journal of ${bytes} bytes is outside the 4 MiB to 256 MiB the ext4 writer makes`,
      'give another journal size',
    );
  }
  return jb;
}
