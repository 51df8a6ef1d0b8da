// VMDK (monolithicSparse): the descriptor's random content id (CID) and the extent's file name, which is the temporary name qemu-img wrote to.
import { Img2vmError } from '../../core/errors.js';
import type { Random } from '../../core/random.js';
import { u32 } from './ids.js';
import { readAt, unexpected, writeAt, type PatchFile } from './file.js';

const MAGIC = 0x564d444b; // "KDMV" read little-endian
const DESCRIPTOR_OFFSET = 28;
const DESCRIPTOR_SIZE = 36;
/** qemu-img's embedded descriptor is 20 sectors; more would be a file img2vm never asked for. */
const MAX_DESCRIPTOR = 64 * 512;
/** "no parent" in parentCID; a CID must never equal it. */
const NO_PARENT = 0xffff_ffff;

/** The file name the extent line may carry: printable, without the quote that ends it. */
export function checkExtentName(name: string): void {
  if (name.length === 0 || /["\\\u0000-\u001f\u007f]/.test(name)) {
    throw new Img2vmError(
      'usage',
      `the VMDK file name "${name}" cannot be written into its descriptor`,
      'choose an output name without quotes, backslashes or control characters',
    );
  }
}

/** Rewrites CID= and the one SPARSE extent's name; the descriptor keeps its place and size, zero-padded. */
export function patchVmdk(f: PatchFile, random: Random, extentName: string): void {
  checkExtentName(extentName);
  const h = readAt(f, 0, 512);
  if (h.readUInt32LE(0) !== MAGIC) unexpected(f, 'no KDMV sparse header');
  const offset = Number(h.readBigUInt64LE(DESCRIPTOR_OFFSET)) * 512;
  const size = Number(h.readBigUInt64LE(DESCRIPTOR_SIZE)) * 512;
  if (offset === 0 || size === 0 || size > MAX_DESCRIPTOR) unexpected(f, 'it has no embedded descriptor');
  const region = readAt(f, offset, size);
  const end = region.indexOf(0);
  // ASCII apart from the file name, which qemu-img writes as UTF-8 bytes.
  const text = region.toString('utf8', 0, end < 0 ? size : end);
  const lines = text.split('\n');
  // qemu prints the CID without leading zeros, so it has 1 to 8 digits.
  const cid = lines.findIndex((l) => /^CID=[0-9a-f]{1,8}$/i.test(l));
  const extents = lines
    .map((l, i) => [i, /^(RW|RDONLY|NOACCESS) (\d+) SPARSE "[^"]*"(.*)$/.exec(l)] as const)
    .filter(([, m]) => m);
  if (cid < 0) unexpected(f, 'its descriptor has no CID line');
  if (extents.length !== 1) unexpected(f, `its descriptor has ${extents.length} sparse extents, not one`);
  let id = u32(random);
  if (id === NO_PARENT) id = 0;
  lines[cid] = `CID=${id.toString(16).padStart(8, '0')}`;
  const [at, m] = extents[0]!;
  lines[at] = `${m![1]} ${m![2]} SPARSE "${extentName}"${m![3]}`;
  const bytes = Buffer.from(lines.join('\n'), 'utf8');
  if (bytes.length >= size) {
    throw new Img2vmError(
      'usage',
      `the VMDK file name "${extentName}" is too long for the descriptor`,
      'choose a shorter output name',
    );
  }
  const out = Buffer.alloc(size);
  bytes.copy(out);
  writeAt(f, out, offset);
}
