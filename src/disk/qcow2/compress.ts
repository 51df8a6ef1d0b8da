// The compressed-qcow2 pass at close(): deflates every data cluster and packs the streams in place, behind the read position.
import { deflateRawSync } from 'node:zlib';
import { CLUSTER, compressedSpan } from './format.js';
import { isZero, preadAll, SequentialWriter, type IoStats } from './io.js';

/**
 * Where each old host cluster's data went. len 0: all zeros, dropped (reads as zeros, like qemu-img convert's
 * sparse detection); len CLUSTER: stored uncompressed at a cluster-aligned off; otherwise a deflate stream of
 * len bytes at byte offset off.
 */
export interface Placement {
  off: Float64Array;
  len: Uint32Array;
  /** Clusters [0, dataClusters) now hold the header and the packed data. */
  dataClusters: number;
}

/** qemu's zlib parameters: raw deflate with a 4 KiB window, which is what its decompressor (inflateInit2 -12) accepts. */
const DEFLATE = { level: 6, windowBits: 12, memLevel: 9 } as const;
const BATCH_CLUSTERS = 16;

/**
 * Compresses host clusters 1..hostClusters-1 (those live() accepts) in host order into the same file, starting at
 * cluster 1. Each output is at most one cluster plus alignment, so the write position never passes the clusters
 * not yet read: memory stays at two buffers plus 12 bytes per cluster for the placement.
 */
export function compactInPlace(
  fd: number,
  hostClusters: number,
  live: (h: number) => boolean,
  stats: IoStats,
): Placement {
  const off = new Float64Array(hostClusters);
  const len = new Uint32Array(hostClusters);
  const w = new SequentialWriter(fd, CLUSTER, stats);
  const batch = Buffer.alloc(BATCH_CLUSTERS * CLUSTER);
  for (let first = 1; first < hostClusters; first += BATCH_CLUSTERS) {
    const n = Math.min(BATCH_CLUSTERS, hostClusters - first);
    preadAll(fd, batch.subarray(0, n * CLUSTER), first * CLUSTER, stats);
    for (let i = 0; i < n; i++) {
      const h = first + i;
      if (!live(h) || isZero(batch, i * CLUSTER, CLUSTER)) continue;
      const data = batch.subarray(i * CLUSTER, (i + 1) * CLUSTER);
      const z = deflateRawSync(data, DEFLATE);
      if (z.length < CLUSTER) {
        off[h] = w.position;
        len[h] = z.length;
        w.write(z);
      } else {
        w.zeros((CLUSTER - (w.position % CLUSTER)) % CLUSTER);
        off[h] = w.position;
        len[h] = CLUSTER;
        w.write(data);
      }
    }
  }
  // Zero the rest of the last cluster, so no stale uncompressed bytes remain before the tables.
  w.zeros((CLUSTER - (w.position % CLUSTER)) % CLUSTER);
  w.flush();
  return { off, len, dataClusters: w.position / CLUSTER };
}

/** Refcounts of the packed data clusters: one per stream (or uncompressed cluster) whose sectors touch the cluster. */
export function placementRefcounts(p: Placement): Uint16Array {
  const rc = new Uint16Array(p.dataClusters);
  rc[0] = 1;
  for (let h = 1; h < p.len.length; h++) {
    const len = p.len[h]!;
    if (len === 0) continue;
    const off = p.off[h]!;
    if (len === CLUSTER) {
      rc[off / CLUSTER] = 1;
      continue;
    }
    const span = compressedSpan(off, len);
    for (let c = Math.floor(span.start / CLUSTER); c <= Math.floor((span.end - 1) / CLUSTER); c++) rc[c] = rc[c]! + 1;
  }
  return rc;
}
