// A BlockTarget that writes a qcow2 file directly (no raw image, no qemu-img convert): data clusters as they come, tables at close().
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { Img2vmError } from '../../core/errors.js';
import type { BlockTarget } from '../target.js';
import { compactInPlace, placementRefcounts, type Placement } from './compress.js';
import { CLUSTER, L2_ENTRIES, MAX_CLUSTERS, writeCompressedEntry, writeStandardEntry } from './format.js';
import { isZero, preadAll, pwriteAll, type IoStats } from './io.js';
import { l1SizeFor, writeTables } from './tables.js';

export interface Qcow2TargetOptions {
  /** Initial virtual size in bytes (resize() and writes past the end change it). */
  size?: number;
  /** Deflate the clusters at close(), as `qemu-img convert -c` does. */
  compress?: boolean;
}

export interface Qcow2Stats extends IoStats {
  /** Host data clusters allocated so far (cluster 0, the header, not counted). */
  allocatedClusters: number;
}

/** Newly allocated clusters are kept in memory up to this many, so scattered small writes into fresh clusters coalesce. */
const TAIL_CLUSTERS = 32;
/** A write that allocates at least this many clusters goes straight to the file (large sequential file data). */
const DIRECT_CLUSTERS = 8;
const MAX_VIRTUAL = MAX_CLUSTERS * CLUSTER;

/**
 * Layout (deterministic: the same writes give the same bytes): cluster 0 is the header; data clusters follow in
 * the order guest clusters were first written; at close() come the L2 tables (ascending guest order), the L1
 * table, the refcount blocks and the refcount table, and the file ends at the last of them. Guest clusters never
 * written with non-zero bytes stay unallocated. Memory: one 32 KiB map per 512 MiB of the virtual disk that holds
 * data (4 bytes per mapped cluster when dense) plus a 2 MiB buffer of the newest clusters.
 */
export class Qcow2Target implements BlockTarget {
  private fd: number | undefined;
  private virtualSize = 0;
  /** Per L1 index: guest cluster → host cluster (0 = unallocated; cluster 0 is the header, never data). */
  private readonly maps = new Map<number, Uint32Array>();
  private nextHost = 1;
  /** Host clusters released by a shrinking resize(): left in place as zeros with refcount 0. */
  private readonly freed = new Set<number>();
  private readonly tail = Buffer.alloc(TAIL_CLUSTERS * CLUSTER);
  /** The tail holds host clusters [tailStart, tailStart + tailLen), always the newest ones. */
  private tailStart = 1;
  private tailLen = 0;
  private readonly compress: boolean;
  private readonly io: IoStats = { writeCalls: 0, readCalls: 0 };

  constructor(
    readonly path: string,
    opts: Qcow2TargetOptions = {},
  ) {
    this.compress = opts.compress ?? false;
    if (opts.size !== undefined) this.setSize(opts.size);
    this.fd = openSync(path, 'w+', 0o644);
  }

  get stats(): Qcow2Stats {
    return { ...this.io, allocatedClusters: this.nextHost - 1 };
  }

  private get handle(): number {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    return this.fd;
  }

  private setSize(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`qcow2: invalid size ${bytes}`);
    if (bytes > MAX_VIRTUAL) {
      throw new Img2vmError(
        'usage',
        `a ${bytes}-byte disk is larger than img2vm's qcow2 writer supports (256 TiB)`,
        'give a smaller --size',
      );
    }
    this.virtualSize = bytes;
  }

  private lookup(g: number): number {
    return this.maps.get(Math.floor(g / L2_ENTRIES))?.[g % L2_ENTRIES] ?? 0;
  }

  private map(g: number, h: number): void {
    const i = Math.floor(g / L2_ENTRIES);
    let t = this.maps.get(i);
    if (!t) this.maps.set(i, (t = new Uint32Array(L2_ENTRIES)));
    t[g % L2_ENTRIES] = h;
  }

  private inTail(h: number): boolean {
    return h >= this.tailStart && h < this.tailStart + this.tailLen;
  }

  private flushTail(): void {
    if (this.tailLen > 0)
      pwriteAll(this.handle, this.tail.subarray(0, this.tailLen * CLUSTER), this.tailStart * CLUSTER, this.io);
    this.tailStart += this.tailLen;
    this.tailLen = 0;
  }

  private allocate(guests: number[]): void {
    if (this.nextHost + guests.length > MAX_CLUSTERS)
      throw new Img2vmError('usage', 'the qcow2 file would exceed 256 TiB', 'give a smaller --size');
    if (guests.length >= DIRECT_CLUSTERS) {
      this.flushTail();
      for (const g of guests) this.map(g, this.nextHost++);
      this.tailStart = this.nextHost;
      return;
    }
    if (this.tailLen + guests.length > TAIL_CLUSTERS) this.flushTail();
    for (const g of guests) {
      this.map(g, this.nextHost++);
      this.tail.fill(0, this.tailLen * CLUSTER, (this.tailLen + 1) * CLUSTER);
      this.tailLen++;
    }
  }

  write(buf: Uint8Array, offset: number): void {
    const fd = this.handle;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`qcow2: invalid offset ${offset}`);
    if (buf.length === 0) return;
    const end = offset + buf.length;
    if (end > this.virtualSize) this.setSize(end);
    const src = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const first = Math.floor(offset / CLUSTER);
    const last = Math.floor((end - 1) / CLUSTER);
    // Zero bytes into an unallocated cluster change nothing a reader sees, so they allocate nothing.
    const fresh: number[] = [];
    for (let g = first; g <= last; g++) {
      if (this.lookup(g) !== 0) continue;
      const a = Math.max(offset, g * CLUSTER);
      const b = Math.min(end, (g + 1) * CLUSTER);
      if (!isZero(src, a - offset, b - a)) fresh.push(g);
    }
    if (fresh.length > 0) this.allocate(fresh);
    // Pieces that are contiguous on the host go out as one pwrite straight from the caller's buffer.
    let runHost = -1;
    let runSrc = 0;
    let runLen = 0;
    const flushRun = () => {
      if (runLen > 0) pwriteAll(fd, src.subarray(runSrc, runSrc + runLen), runHost, this.io);
      runLen = 0;
    };
    for (let g = first; g <= last; g++) {
      const h = this.lookup(g);
      if (h === 0) continue;
      const a = Math.max(offset, g * CLUSTER);
      const n = Math.min(end, (g + 1) * CLUSTER) - a;
      const inner = a - g * CLUSTER;
      const s = a - offset;
      if (this.inTail(h)) {
        src.copy(this.tail, (h - this.tailStart) * CLUSTER + inner, s, s + n);
        continue;
      }
      const hostOff = h * CLUSTER + inner;
      if (runLen > 0 && runHost + runLen === hostOff && runSrc + runLen === s) {
        runLen += n;
      } else {
        flushRun();
        runHost = hostOff;
        runSrc = s;
        runLen = n;
      }
    }
    flushRun();
  }

  read(buf: Uint8Array, offset: number): number {
    const fd = this.handle;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`qcow2: invalid offset ${offset}`);
    const total = Math.max(0, Math.min(buf.length, this.virtualSize - offset));
    if (total === 0) return 0;
    const end = offset + total;
    let runHost = -1;
    let runDst = 0;
    let runLen = 0;
    const flushRun = () => {
      if (runLen > 0) preadAll(fd, buf.subarray(runDst, runDst + runLen), runHost, this.io);
      runLen = 0;
    };
    for (let g = Math.floor(offset / CLUSTER); g <= Math.floor((end - 1) / CLUSTER); g++) {
      const a = Math.max(offset, g * CLUSTER);
      const n = Math.min(end, (g + 1) * CLUSTER) - a;
      const inner = a - g * CLUSTER;
      const d = a - offset;
      const h = this.lookup(g);
      if (h === 0) {
        buf.fill(0, d, d + n);
      } else if (this.inTail(h)) {
        const t = (h - this.tailStart) * CLUSTER + inner;
        buf.set(this.tail.subarray(t, t + n), d);
      } else if (runLen > 0 && runHost + runLen === h * CLUSTER + inner && runDst + runLen === d) {
        runLen += n;
      } else {
        flushRun();
        runHost = h * CLUSTER + inner;
        runDst = d;
        runLen = n;
      }
    }
    flushRun();
    return total;
  }

  size(): number {
    return this.virtualSize;
  }

  /** Growing is free (the new range is unallocated); shrinking drops the clusters past the end, as truncating a raw file does. */
  resize(bytes: number): void {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    if (bytes < this.virtualSize) this.shrink(bytes);
    this.setSize(bytes);
  }

  private shrink(bytes: number): void {
    const keep = Math.ceil(bytes / CLUSTER);
    const cut = bytes % CLUSTER;
    if (cut !== 0) {
      // Bytes past the new end must read as zeros if the disk grows again.
      const h = this.lookup(keep - 1);
      if (h !== 0) this.zeroHost(h, cut, CLUSTER - cut);
    }
    for (const [i, t] of [...this.maps]) {
      if ((i + 1) * L2_ENTRIES <= keep) continue;
      for (let k = Math.max(0, keep - i * L2_ENTRIES); k < L2_ENTRIES; k++) {
        const h = t[k]!;
        if (h === 0) continue;
        this.zeroHost(h, 0, CLUSTER);
        this.freed.add(h);
        t[k] = 0;
      }
      if (t.every((h) => h === 0)) this.maps.delete(i);
    }
  }

  private zeroHost(h: number, from: number, len: number): void {
    if (this.inTail(h))
      this.tail.fill(0, (h - this.tailStart) * CLUSTER + from, (h - this.tailStart) * CLUSTER + from + len);
    else pwriteAll(this.handle, Buffer.alloc(len), h * CLUSTER + from, this.io);
  }

  /** Writes the tables and the header (after the compression pass, with compress) and closes the file. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    try {
      this.flushTail();
      // qemu counts the virtual size in 512-byte sectors; round up so no written byte is cut off.
      const virtualSize = Math.ceil(this.virtualSize / 512) * 512;
      const l1Size = l1SizeFor(virtualSize);
      const indexes = [...this.maps.keys()].filter((i) => i < l1Size).sort((a, b) => a - b);
      const plan = this.compress ? this.compressedSource(fd, indexes) : this.plainSource(indexes);
      const tables = writeTables(fd, { virtualSize, ...plan }, this.io);
      ftruncateSync(fd, tables.totalClusters * CLUSTER);
    } finally {
      this.fd = undefined;
      closeSync(fd);
    }
  }

  /** Closes the file without writing the tables (it is being removed). */
  discard(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }

  private plainSource(l2Indexes: number[]) {
    return {
      dataClusters: this.nextHost,
      l2Indexes,
      encodeL2: (i: number, out: Buffer) => {
        const t = this.maps.get(i)!;
        for (let k = 0; k < L2_ENTRIES; k++) if (t[k]! !== 0) writeStandardEntry(out, k * 8, t[k]!);
      },
      refcount: (h: number) => (this.freed.has(h) ? 0 : 1),
    };
  }

  private compressedSource(fd: number, indexes: number[]) {
    const p: Placement = compactInPlace(fd, this.nextHost, (h) => !this.freed.has(h), this.io);
    const rc = placementRefcounts(p);
    // A table whose clusters all turned out to be zeros is left out: those guest clusters read as zeros unallocated.
    const l2Indexes = indexes.filter((i) => this.maps.get(i)!.some((h) => h !== 0 && p.len[h]! !== 0));
    return {
      dataClusters: p.dataClusters,
      l2Indexes,
      encodeL2: (i: number, out: Buffer) => {
        const t = this.maps.get(i)!;
        for (let k = 0; k < L2_ENTRIES; k++) {
          const h = t[k]!;
          const len = h === 0 ? 0 : p.len[h]!;
          if (len === CLUSTER) writeStandardEntry(out, k * 8, p.off[h]! / CLUSTER);
          else if (len !== 0) writeCompressedEntry(out, k * 8, p.off[h]!, len);
        }
      },
      refcount: (h: number) => rc[h]!,
    };
  }
}
