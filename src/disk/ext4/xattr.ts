// Extended attributes: name-index prefixes, POSIX ACLs in ext4's on-disk form, packed into the inode first and then one block.
import { Img2vmError } from '../../core/errors.js';
import { crc32c } from '../../core/crc32c.js';
import { BLOCK, INODE_SIZE } from './geometry.js';
import { XATTR_IBODY_OFFSET } from './inode.js';

const MAGIC = 0xea020000;
const BLOCK_HEADER = 32;
export const IBODY_SPACE = INODE_SIZE - XATTR_IBODY_OFFSET;

interface Attr {
  index: number;
  name: Buffer;
  value: Buffer;
}

const PREFIXES: Array<[string, number]> = [
  ['user.', 1],
  ['trusted.', 4],
  ['security.', 6],
];

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function entrySize(a: Attr): number {
  return pad4(16 + a.name.length);
}

/** POSIX ACL from the xattr form (version 2, 8-byte entries) to ext4's (version 1, 4-byte entries without an id). */
export function aclToDisk(v: Buffer, what: () => string): Buffer {
  if (v.length < 4 || (v.length - 4) % 8 !== 0 || v.readUInt32LE(0) !== 2) {
    throw new Img2vmError(
      'badImage',
      `${what()} is not a POSIX ACL in the xattr format`,
      'the image content is damaged or hostile',
    );
  }
  const parts: Buffer[] = [Buffer.from([1, 0, 0, 0])];
  for (let off = 4; off < v.length; off += 8) {
    const tag = v.readUInt16LE(off);
    if (tag === 0x02 || tag === 0x08) {
      parts.push(v.subarray(off, off + 8));
    } else if (tag === 0x01 || tag === 0x04 || tag === 0x10 || tag === 0x20) {
      parts.push(v.subarray(off, off + 4));
    } else {
      throw new Img2vmError(
        'badImage',
        `${what()} has an ACL entry of unknown type ${tag}`,
        'the image content is damaged or hostile',
      );
    }
  }
  return Buffer.concat(parts);
}

function toAttr(full: string, value: Buffer, path: () => string): Attr {
  const what = (): string => `xattr ${JSON.stringify(full)} of ${path()}`;
  let index = 0;
  let rest = '';
  if (full === 'system.posix_acl_access') {
    return { index: 2, name: Buffer.alloc(0), value: aclToDisk(value, what) };
  }
  if (full === 'system.posix_acl_default') {
    return { index: 3, name: Buffer.alloc(0), value: aclToDisk(value, what) };
  }
  for (const [p, i] of PREFIXES) {
    if (full.startsWith(p)) {
      index = i;
      rest = full.slice(p.length);
    }
  }
  if (index === 0 || rest.length === 0) {
    throw new Img2vmError(
      'badImage',
      `${what()} is in a namespace ext4 does not store (only user., trusted., security. and POSIX ACLs)`,
      'remove the attribute from the image',
    );
  }
  const name = Buffer.from(rest, 'latin1');
  if (name.length > 255)
    throw new Img2vmError(
      'badImage',
      `${what()} has a name longer than 255 bytes`,
      'the image content is damaged or hostile',
    );
  return { index, name, value };
}

/** The kernel's entry hash: name bytes, then the value as little-endian 32-bit words. */
export function entryHash(a: Attr): number {
  let h = 0;
  for (const c of a.name) h = ((h << 5) ^ (h >>> 27) ^ c) >>> 0;
  const padded = a.value.length % 4 === 0 ? a.value : Buffer.concat([a.value, Buffer.alloc(4 - (a.value.length % 4))]);
  for (let i = 0; i < padded.length; i += 4) h = ((h << 16) ^ (h >>> 16) ^ padded.readUInt32LE(i)) >>> 0;
  return h;
}

/**
 * Entries from `start`, values from the end of the area down; offsets relative to `base`. Returns
 * the entry hashes.
 */
function writeArea(buf: Buffer, start: number, end: number, base: number, attrs: Attr[]): number[] {
  let e = start;
  let v = end;
  const hashes: number[] = [];
  for (const a of attrs) {
    v -= pad4(a.value.length);
    a.value.copy(buf, v);
    const h = entryHash(a);
    hashes.push(h);
    buf.writeUInt8(a.name.length, e);
    buf.writeUInt8(a.index, e + 1);
    buf.writeUInt16LE(a.value.length ? v - base : 0, e + 2);
    buf.writeUInt32LE(0, e + 4);
    buf.writeUInt32LE(a.value.length, e + 8);
    buf.writeUInt32LE(h, e + 12);
    a.name.copy(buf, e + 16);
    e += entrySize(a);
  }
  return hashes;
}

export interface XattrLayout {
  ibody: Attr[];
  block: Attr[];
}

/**
 * Sorts the attributes as the kernel keeps block entries (index, name length, name) and puts each
 * into the inode while it fits, else into the block. Throws badImage if the block overflows.
 */
export function layoutXattrs(xattrs: Map<string, Buffer>, path: () => string): XattrLayout {
  const attrs = [...xattrs].map(([k, v]) => toAttr(k, v, path));
  attrs.sort((a, b) => a.index - b.index || a.name.length - b.name.length || Buffer.compare(a.name, b.name));
  const ibody: Attr[] = [];
  const block: Attr[] = [];
  // The inode area: 4-byte magic, entries, a 4-byte terminator, values.
  let ifree = IBODY_SPACE - 8;
  let bfree = BLOCK - BLOCK_HEADER - 4;
  for (const a of attrs) {
    const need = entrySize(a) + pad4(a.value.length);
    if (need <= ifree) {
      ibody.push(a);
      ifree -= need;
    } else if (need <= bfree) {
      block.push(a);
      bfree -= need;
    } else {
      const total = attrs.reduce((s, x) => s + entrySize(x) + pad4(x.value.length), 0);
      throw new Img2vmError(
        'badImage',
        `the extended attributes of ${path()} take ${total} bytes, more than fit in an ext4 inode and one 4 KiB block`,
        'remove or shorten some of the attributes in the image',
      );
    }
  }
  return { ibody, block };
}

/** The in-inode area (IBODY_SPACE bytes, magic first), or undefined without in-inode attributes. */
export function ibodyArea(l: XattrLayout): Buffer | undefined {
  if (l.ibody.length === 0) return undefined;
  const b = Buffer.alloc(IBODY_SPACE);
  b.writeUInt32LE(MAGIC, 0);
  writeArea(b, 4, IBODY_SPACE, 4, l.ibody);
  return b;
}

/** The xattr block for block number blk, checksummed. */
export function xattrBlock(l: XattrLayout, blk: number, fsSeed: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(1, 4); // h_refcount
  b.writeUInt32LE(1, 8); // h_blocks
  const hashes = writeArea(b, BLOCK_HEADER, BLOCK, 0, l.block);
  let h = 0;
  for (const eh of hashes) h = ((h << 16) ^ (h >>> 16) ^ eh) >>> 0;
  b.writeUInt32LE(h, 12);
  const le = Buffer.alloc(8);
  le.writeBigUInt64LE(BigInt(blk));
  b.writeUInt32LE(crc32c(crc32c(fsSeed, le), b), 16);
  return b;
}
