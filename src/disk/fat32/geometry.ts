// FAT32 geometry from a partition size: cluster size, FAT length and cluster count, chosen the way mkfs.fat -F 32 does.

export const SECTOR = 512;
export const RESERVED_SECTORS = 32;
export const FAT_COUNT = 2;
export const FSINFO_SECTOR = 1;
export const BACKUP_BOOT_SECTOR = 6;
export const ROOT_CLUSTER = 2;
/** Below this many clusters every driver takes the volume for FAT16, whatever the boot sector says. */
export const MIN_CLUSTERS = 65525;
/** Cluster numbers from 0x0FFFFFF7 up are reserved (bad, end of chain), and 0 and 1 are not clusters. */
export const MAX_CLUSTERS = 0x0ffffff5 - 1;

export interface Fat32Geometry {
  /** Sectors in the file system (the partition may have a few more: see below). */
  totalSectors: number;
  sectorsPerCluster: number;
  clusterBytes: number;
  /** Sectors of one FAT. */
  fatSectors: number;
  /** Usable clusters, numbered 2 .. clusterCount + 1. */
  clusterCount: number;
  /** Sector (from the start of the file system) of cluster 2. */
  dataSector: number;
  /** CHS fields nobody uses on an ESP, kept as mkfs.fat writes them because DOS-era checks (mtools) look at them. */
  sectorsPerTrack: number;
  heads: number;
}

/**
 * Microsoft's table for FAT32 (fatgen103): 512-byte clusters up to 260 MiB, which is also what mkfs.fat -s 1 gives
 * for the 64-256 MiB ESPs img2vm makes; 4 KiB up to 8 GiB, then 8, 16, 32 KiB. Bigger clusters keep the FATs (written
 * whole) small on big ESPs.
 */
export function sectorsPerClusterFor(sectors: number): number {
  if (sectors <= 532480) return 1;
  if (sectors <= 16777216) return 8;
  if (sectors <= 33554432) return 16;
  if (sectors <= 67108864) return 32;
  return 64;
}

/** The SD card specification's CHS recommendation below 256 MiB, LBA-assist translation above it (as mkfs.fat). */
function chs(sectors: number): { sectorsPerTrack: number; heads: number } {
  if (sectors <= 524288) {
    const heads = sectors <= 32768 ? 2 : sectors <= 65536 ? 4 : sectors <= 262144 ? 8 : 16;
    return { sectorsPerTrack: sectors <= 4096 ? 16 : 32, heads };
  }
  const cyl = 63 * 1024;
  const heads =
    sectors <= 16 * cyl ? 16 : sectors <= 32 * cyl ? 32 : sectors <= 64 * cyl ? 64 : sectors <= 128 * cyl ? 128 : 255;
  return { sectorsPerTrack: 63, heads };
}

/** The geometry for a file system of `bytes`, or undefined when FAT32 cannot be made that small (or large). */
export function fat32Geometry(bytes: number): Fat32Geometry | undefined {
  const partitionSectors = Math.min(Math.floor(bytes / SECTOR), 0xffffffff);
  const { sectorsPerTrack, heads } = chs(partitionSectors);
  // A whole number of tracks, as mkfs.fat does for DOS and mtools; with MiB-aligned partitions this cuts nothing.
  const totalSectors = partitionSectors - (partitionSectors % sectorsPerTrack);
  const spc = sectorsPerClusterFor(totalSectors);
  const clusterBytes = spc * SECTOR;
  const afterReserved = totalSectors - RESERVED_SECTORS;
  if (afterReserved <= 0) return undefined;
  // Each cluster costs its data plus a 4-byte entry in each FAT; entries 0 and 1 cost FAT space but no data.
  const estimate = Math.floor((afterReserved * SECTOR + FAT_COUNT * 8) / (clusterBytes + FAT_COUNT * 4));
  // The FATs end on a cluster boundary so that clusters stay aligned to their size from the partition start.
  const fatSectors = alignUp(Math.ceil(((estimate + 2) * 4) / SECTOR), spc);
  const dataSector = RESERVED_SECTORS + FAT_COUNT * fatSectors;
  // Rounding the FAT up can leave room for a cluster the FAT has no entry for: never count it.
  const clusterCount = Math.min(Math.floor((totalSectors - dataSector) / spc), (fatSectors * SECTOR) / 4 - 2);
  if (clusterCount < MIN_CLUSTERS || clusterCount > MAX_CLUSTERS) return undefined;
  return {
    totalSectors,
    sectorsPerCluster: spc,
    clusterBytes,
    fatSectors,
    clusterCount,
    dataSector,
    sectorsPerTrack,
    heads,
  };
}

/** Byte offset, from the start of the file system, of a cluster. */
export function clusterOffset(g: Fat32Geometry, cluster: number): number {
  return (g.dataSector + (cluster - ROOT_CLUSTER) * g.sectorsPerCluster) * SECTOR;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
