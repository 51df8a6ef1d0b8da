// Places and writes a finished qcow2's tables after its data: L2 tables, the L1 table, refcount blocks, the refcount table, then the header.
import { CLUSTER, encodeHeader, L2_ENTRIES, REFCOUNTS_PER_BLOCK, writeStandardEntry } from './format.js';
import { pwriteAll, SequentialWriter, type IoStats } from './io.js';

/** Cluster indexes of every table; all of them follow the data, in this order, so placement depends only on counts. */
export interface TablePlan {
  l1Size: number;
  l2Start: number;
  l1Start: number;
  l1Clusters: number;
  refcountBlocksStart: number;
  refcountBlocks: number;
  refcountTableStart: number;
  refcountTableClusters: number;
  /** Clusters in the file: it ends exactly at the last table, with no trailing bytes. */
  totalClusters: number;
}

/** L1 entries needed for a virtual size: one per 512 MiB. */
export function l1SizeFor(virtualSize: number): number {
  return Math.ceil(Math.ceil(virtualSize / CLUSTER) / L2_ENTRIES);
}

export function planTables(dataClusters: number, l2Tables: number, virtualSize: number): TablePlan {
  const l1Size = l1SizeFor(virtualSize);
  // An empty disk has no L1 table at all (offset 0), as qemu-img writes it: a table nothing maps would be a leak.
  const l1Clusters = Math.ceil((l1Size * 8) / CLUSTER);
  const l2Start = dataClusters;
  const l1Start = l2Start + l2Tables;
  const refcountBlocksStart = l1Start + l1Clusters;
  // The refcount structures count themselves: grow them until they cover the whole file.
  let blocks = 0;
  let tableClusters = 0;
  for (;;) {
    const total = refcountBlocksStart + blocks + tableClusters;
    const needBlocks = Math.ceil(total / REFCOUNTS_PER_BLOCK);
    const needTable = Math.ceil((needBlocks * 8) / CLUSTER);
    if (needBlocks === blocks && needTable === tableClusters) break;
    blocks = needBlocks;
    tableClusters = needTable;
  }
  const refcountTableStart = refcountBlocksStart + blocks;
  return {
    l1Size,
    l2Start,
    l1Start,
    l1Clusters,
    refcountBlocksStart,
    refcountBlocks: blocks,
    refcountTableStart,
    refcountTableClusters: tableClusters,
    totalClusters: refcountTableStart + tableClusters,
  };
}

export interface TableSource {
  virtualSize: number;
  /** Clusters [0, dataClusters) hold the header (cluster 0) and the data; tables start after them. */
  dataClusters: number;
  /** L1 indexes that get an L2 table, ascending. */
  l2Indexes: readonly number[];
  /** Fills the 8192 big-endian L2 entries of the table at an L1 index into out (which is zeroed). */
  encodeL2(l1Index: number, out: Buffer): void;
  /** The refcount of data cluster h (0 < h < dataClusters). */
  refcount(h: number): number;
}

/** Writes every table and the header; returns the plan (the caller truncates the file to totalClusters). */
export function writeTables(fd: number, src: TableSource, stats: IoStats): TablePlan {
  const plan = planTables(src.dataClusters, src.l2Indexes.length, src.virtualSize);
  const w = new SequentialWriter(fd, plan.l2Start * CLUSTER, stats);
  const cluster = Buffer.alloc(CLUSTER);
  for (const i of src.l2Indexes) {
    cluster.fill(0);
    src.encodeL2(i, cluster);
    w.write(cluster);
  }
  const l1 = Buffer.alloc(plan.l1Clusters * CLUSTER);
  src.l2Indexes.forEach((i, n) => writeStandardEntry(l1, i * 8, plan.l2Start + n));
  w.write(l1);
  for (let b = 0; b < plan.refcountBlocks; b++) {
    cluster.fill(0);
    const first = b * REFCOUNTS_PER_BLOCK;
    const end = Math.min(first + REFCOUNTS_PER_BLOCK, plan.totalClusters);
    for (let h = first; h < end; h++) {
      const rc = h === 0 || h >= src.dataClusters ? 1 : src.refcount(h);
      cluster.writeUInt16BE(rc, (h - first) * 2);
    }
    w.write(cluster);
  }
  const table = Buffer.alloc(plan.refcountTableClusters * CLUSTER);
  for (let b = 0; b < plan.refcountBlocks; b++) {
    // Refcount table entries are plain offsets (no flag bits).
    const off = (plan.refcountBlocksStart + b) * CLUSTER;
    table.writeUInt32BE(Math.floor(off / 2 ** 32), b * 8);
    table.writeUInt32BE(off % 2 ** 32, b * 8 + 4);
  }
  w.write(table);
  w.flush();
  const header = encodeHeader({
    virtualSize: src.virtualSize,
    l1Size: plan.l1Size,
    l1Offset: plan.l1Clusters > 0 ? plan.l1Start * CLUSTER : 0,
    refcountTableOffset: plan.refcountTableStart * CLUSTER,
    refcountTableClusters: plan.refcountTableClusters,
  });
  pwriteAll(fd, header, 0, stats);
  return plan;
}
