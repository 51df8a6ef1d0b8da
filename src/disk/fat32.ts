// Writes the EFI system partition's FAT32 file system through a BlockTarget, byte-reproducibly and without host tools.
import { Img2vmError } from '../core/errors.js';
import type { BlockTarget } from './target.js';
import { reservedArea, type BootFields } from './fat32/boot.js';
import {
  ATTR_ARCHIVE,
  ATTR_DIRECTORY,
  ATTR_VOLUME_ID,
  DOT,
  DOTDOT,
  encodeNamed,
  encodeShortEntry,
  ENTRY,
  fatTime,
  type FatTime,
} from './fat32/entries.js';
import { clusterOffset, RESERVED_SECTORS, ROOT_CLUSTER, SECTOR, type Fat32Geometry } from './fat32/geometry.js';
import {
  planFat32Layout,
  type DirNode,
  type Fat32Content,
  type Fat32File,
  type Fat32Layout,
  type FileNode,
} from './fat32/layout.js';

export type { Fat32Content, Fat32File, Fat32Layout } from './fat32/layout.js';

export interface Fat32Options {
  /** Byte offset of the file system on the target (its partition's start), a multiple of 512. */
  offset: number;
  /** Bytes of the partition. */
  size: number;
  /** uint32; blkid and fstab show it as XXXX-XXXX. */
  volumeId: number;
  /** At most 11 characters valid in a short name, upper case; '' for no label. */
  label: string;
  /** Seconds since 1970: every timestamp in the file system. */
  epoch: number;
}

const FAT_MEDIA_ENTRY = 0x0ffffff8;
/** Entry 1 with the "cleanly unmounted" and "no I/O errors" bits set. */
const FAT_CLEAN_ENTRY = 0x0fffffff;
const END_OF_CHAIN = 0x0fffffff;
/** FAT region chunk and file-data coalescing size: bounds memory whatever the volume or file size. */
const CHUNK = 1 << 20;

function checkOptions(o: Fat32Options): void {
  if (!Number.isSafeInteger(o.offset) || o.offset < 0 || o.offset % SECTOR !== 0)
    throw new RangeError(`writeFat32: offset ${o.offset} is not a multiple of ${SECTOR}`);
  if (!Number.isSafeInteger(o.size) || o.size <= 0)
    throw new RangeError(`writeFat32: size ${o.size} is not a positive integer`);
  if (!Number.isInteger(o.volumeId) || o.volumeId < 0 || o.volumeId > 0xffffffff)
    throw new RangeError(`writeFat32: volume id ${o.volumeId} is not a uint32`);
  if (!Number.isFinite(o.epoch)) throw new RangeError(`writeFat32: epoch ${o.epoch} is not a number`);
  if (!/^[A-Z0-9 !#$%&'()\-@^_`{}~]{0,11}$/.test(o.label) || o.label.startsWith(' ')) {
    throw new Img2vmError(
      'usage',
      `the ESP label ${JSON.stringify(o.label)} is not a FAT volume label`,
      'use at most 11 upper-case letters, digits or - _, not starting with a space',
    );
  }
}

/** Plans without writing: what writeFat32 would lay out (for tests and size estimates). Throws what writeFat32 throws. */
export function planFat32(opts: Fat32Options, files: readonly Fat32File[]): Fat32Layout {
  checkOptions(opts);
  return planFat32Layout(opts.size, files, opts.label !== '');
}

/**
 * Makes a FAT32 file system at opts.offset holding `files`, each in one contiguous cluster run, streamed.
 * Writes the reserved sectors, both FATs and every directory cluster in full and nothing else: free clusters and
 * the slack after each file's end stay holes. The same options and files give the same bytes, in any input order.
 */
export async function writeFat32(
  target: BlockTarget,
  opts: Fat32Options,
  files: readonly Fat32File[],
  signal?: AbortSignal,
): Promise<void> {
  const layout = planFat32(opts, files);
  // Written past the end, the file system would grow a raw file or a qcow2 beyond the disk its partition table describes.
  if (target.size() < opts.offset + opts.size)
    throw new RangeError(
      `writeFat32: the target is ${target.size()} bytes, the file system ends at ${opts.offset + opts.size}`,
    );
  const g = layout.geometry;
  const free = g.clusterCount - layout.used;
  const boot: BootFields = {
    geometry: g,
    hiddenSectors: opts.offset / SECTOR <= 0xffffffff ? opts.offset / SECTOR : 0,
    volumeId: opts.volumeId,
    label: opts.label,
    freeClusters: free,
    nextFree: free > 0 ? ROOT_CLUSTER + layout.used : undefined,
  };
  target.write(reservedArea(boot), opts.offset);
  writeFats(target, opts.offset, layout);
  const time = fatTime(opts.epoch);
  for (const d of layout.dirs)
    target.write(encodeDirectory(d, g, time, opts.label), opts.offset + clusterOffset(g, d.cluster));
  for (const f of layout.files) await writeFile(target, opts.offset + clusterOffset(g, f.cluster), f, signal);
}

function writeFats(target: BlockTarget, base: number, layout: Fat32Layout): void {
  const g = layout.geometry;
  const ends = new Set<number>();
  for (const n of [...layout.dirs, ...layout.files]) if (n.clusters > 0) ends.add(n.cluster + n.clusters - 1);
  const firstFree = ROOT_CLUSTER + layout.used;
  const fatBytes = g.fatSectors * SECTOR;
  const chunk = Buffer.alloc(Math.min(CHUNK, fatBytes));
  for (let copy = 0; copy < 2; copy++) {
    const fatAt = base + (RESERVED_SECTORS + copy * g.fatSectors) * SECTOR;
    for (let at = 0; at < fatBytes; at += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, fatBytes - at));
      part.fill(0);
      const first = at / 4;
      const last = Math.min(first + part.length / 4, firstFree);
      for (let e = first; e < last; e++) {
        const value = e === 0 ? FAT_MEDIA_ENTRY : e === 1 ? FAT_CLEAN_ENTRY : ends.has(e) ? END_OF_CHAIN : e + 1;
        part.writeUInt32LE(value, (e - first) * 4);
      }
      target.write(part, fatAt + at);
    }
  }
}

function encodeDirectory(d: DirNode, g: Fat32Geometry, time: FatTime, label: string): Buffer {
  const buf = Buffer.alloc(d.clusters * g.clusterBytes);
  let at = 0;
  const put = (e: Buffer): void => {
    e.copy(buf, at);
    at += ENTRY;
  };
  if (d.parent === undefined) {
    if (label !== '')
      put(
        encodeShortEntry({
          name: Buffer.from(label.padEnd(11, ' '), 'latin1'),
          attr: ATTR_VOLUME_ID,
          caseFlags: 0,
          cluster: 0,
          size: 0,
          time,
        }),
      );
  } else {
    put(encodeShortEntry({ name: DOT, attr: ATTR_DIRECTORY, caseFlags: 0, cluster: d.cluster, size: 0, time }));
    // ".." of a directory in the root names cluster 0, not the root's cluster: FAT's convention for the root.
    const up = d.parent.parent === undefined ? 0 : d.parent.cluster;
    put(encodeShortEntry({ name: DOTDOT, attr: ATTR_DIRECTORY, caseFlags: 0, cluster: up, size: 0, time }));
  }
  for (const c of d.children) {
    const e =
      c.kind === 'dir'
        ? { attr: ATTR_DIRECTORY, cluster: c.cluster, size: 0, time }
        : { attr: ATTR_ARCHIVE, cluster: c.cluster, size: c.size, time };
    for (const part of encodeNamed(c.name, c.short, e)) put(part);
  }
  return buf;
}

/** Collects small chunks into CHUNK-sized writes; big chunks go straight through. */
class SequentialWriter {
  private readonly buf = Buffer.alloc(CHUNK);
  private fill = 0;
  constructor(
    private readonly target: BlockTarget,
    private at: number,
  ) {}

  push(data: Uint8Array): void {
    if (this.fill === 0 && data.length >= CHUNK) {
      this.target.write(data, this.at);
      this.at += data.length;
      return;
    }
    let from = 0;
    while (from < data.length) {
      const n = Math.min(CHUNK - this.fill, data.length - from);
      this.buf.set(data.subarray(from, from + n), this.fill);
      this.fill += n;
      from += n;
      if (this.fill === CHUNK) this.flush();
    }
  }

  flush(): void {
    if (this.fill > 0) this.target.write(this.buf.subarray(0, this.fill), this.at);
    this.at += this.fill;
    this.fill = 0;
  }
}

async function writeFile(target: BlockTarget, at: number, f: FileNode, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  if (f.size === 0) return;
  const content: Fat32Content = f.content;
  if (content instanceof Uint8Array) {
    target.write(content, at);
    return;
  }
  const out = new SequentialWriter(target, at);
  let seen = 0;
  for await (const chunk of content.read()) {
    signal?.throwIfAborted();
    // Never past the file's run: the next file's clusters start right after it.
    if (seen + chunk.length > f.size) throw sizeChanged(f, `more than ${f.size}`);
    out.push(chunk);
    seen += chunk.length;
  }
  out.flush();
  if (seen !== f.size) throw sizeChanged(f, String(seen));
}

function sizeChanged(f: FileNode, got: string): Img2vmError {
  return new Img2vmError(
    'badImage',
    `${f.path} for the EFI system partition gave ${got} bytes, but its size was given as ${f.size}`,
    'the file changed while img2vm read it; run again',
  );
}
