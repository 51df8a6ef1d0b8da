// VHDX: header sequence numbers and write GUIDs, the disk's page-83 id, and the stale log qemu-img leaves; header checksums redone.
import type { Random } from '../../core/random.js';
import { crc32cOf as crc32c } from '../../core/crc32c.js';
import { guidLayout, guidLE, u32 } from './ids.js';
import { readAt, unexpected, writeAt, type PatchFile } from './file.js';

const KiB = 1024;
const HEADERS = [64 * KiB, 128 * KiB] as const;
const HEADER_SIZE = 4 * KiB;
const REGION_TABLE = 192 * KiB;
const REGION_TABLE_SIZE = 64 * KiB;
const SEQUENCE = 8;
const FILE_WRITE_GUID = 16;
const DATA_WRITE_GUID = 32;
const LOG_GUID = 48;
const LOG_LENGTH = 68;
const LOG_OFFSET = 72;
/** Region and metadata-item ids from the VHDX specification, as stored (GUID layout). */
const METADATA_REGION = guidLayout('8b7ca206-4790-4b9a-b8fe-575f050f886e');
const PAGE83_ITEM = guidLayout('beca12ab-b2e6-4523-93ef-c309e000c746');

/** CRC-32C of a structure with its checksum field (bytes 4..7) taken as zero. */
export function vhdxChecksum(b: Buffer): number {
  const c = Buffer.from(b);
  c.writeUInt32LE(0, 4);
  return crc32c(c);
}

function readChecked(f: PatchFile, at: number, size: number, signature: string): Buffer {
  const b = readAt(f, at, size);
  if (b.toString('latin1', 0, signature.length) !== signature) unexpected(f, `no "${signature}" structure at ${at}`);
  if (b.readUInt32LE(4) !== vhdxChecksum(b)) unexpected(f, `the "${signature}" checksum at ${at} is wrong`);
  return b;
}

/** The byte offset of the page-83 id (the disk's unique id) inside the metadata region. */
function page83Offset(f: PatchFile): number {
  const rt = readChecked(f, REGION_TABLE, REGION_TABLE_SIZE, 'regi');
  const count = rt.readUInt32LE(8);
  for (let i = 0; i < count && 16 + (i + 1) * 32 <= REGION_TABLE_SIZE; i++) {
    const e = 16 + i * 32;
    if (!rt.subarray(e, e + 16).equals(METADATA_REGION)) continue;
    const region = Number(rt.readBigUInt64LE(e + 16));
    const table = readAt(f, region, 64 * KiB);
    if (table.toString('latin1', 0, 8) !== 'metadata') unexpected(f, 'no metadata table where the region table says');
    const items = table.readUInt16LE(10);
    for (let k = 0; k < items && 32 + (k + 1) * 32 <= table.length; k++) {
      const m = 32 + k * 32;
      if (!table.subarray(m, m + 16).equals(PAGE83_ITEM)) continue;
      if (table.readUInt32LE(m + 20) !== 16) unexpected(f, 'the page-83 item is not 16 bytes');
      return region + table.readUInt32LE(m + 16);
    }
    unexpected(f, 'the metadata table has no page-83 item');
  }
  unexpected(f, 'the region table has no metadata region');
}

export function patchVhdx(f: PatchFile, random: Random): void {
  if (readAt(f, 0, 8).toString('latin1') !== 'vhdxfile') unexpected(f, 'no "vhdxfile" identifier');
  const headers = HEADERS.map((at) => readChecked(f, at, HEADER_SIZE, 'head'));
  const zero = Buffer.alloc(16);
  for (const h of headers) {
    // A non-zero log GUID means the log holds updates still to replay: the file is not finished.
    if (!h.subarray(LOG_GUID, LOG_GUID + 16).equals(zero)) unexpected(f, 'its log is not empty');
  }
  const [h1, h2] = headers as [Buffer, Buffer];
  if (
    h1.readBigUInt64LE(LOG_OFFSET) !== h2.readBigUInt64LE(LOG_OFFSET) ||
    h1.readUInt32LE(LOG_LENGTH) !== h2.readUInt32LE(LOG_LENGTH)
  ) {
    unexpected(f, 'its two headers disagree about the log');
  }
  const page83 = page83Offset(f);
  // Sequence numbers start at a random value; keep their order (the higher one is the current header) and spacing.
  const seqs = headers.map((h) => h.readBigUInt64LE(SEQUENCE));
  const low = seqs.reduce((a, b) => (b < a ? b : a));
  const base = BigInt(u32(random));
  headers.forEach((h, i) => h.writeBigUInt64LE(base + (seqs[i]! - low), SEQUENCE));
  // Equal GUIDs stay equal (the same write session), different ones stay different.
  const substitute = new Map<string, Buffer>();
  for (const h of headers) {
    for (const at of [FILE_WRITE_GUID, DATA_WRITE_GUID]) {
      const old = h.toString('hex', at, at + 16);
      let g = substitute.get(old);
      if (!g) substitute.set(old, (g = guidLE(random)));
      g.copy(h, at);
    }
  }
  headers.forEach((h, i) => {
    h.writeUInt32LE(vhdxChecksum(h), 4);
    writeAt(f, h, HEADERS[i]!);
  });
  writeAt(f, guidLE(random), page83);
  // With the log GUID zero the log is empty by definition; what qemu-img left there carries its random log GUID.
  const logOffset = Number(h1.readBigUInt64LE(LOG_OFFSET));
  const logLength = h1.readUInt32LE(LOG_LENGTH);
  if (logOffset + logLength > f.size) unexpected(f, 'its log lies outside the file');
  writeAt(f, Buffer.alloc(logLength), logOffset);
}
