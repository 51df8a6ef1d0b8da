// The LUKS anti-forensic splitter: a key spread over many random stripes, so losing one stripe's sectors loses the key.
//
// As the LUKS specification defines it: every stripe but the last is random; a running block is XORed with each
// and "diffused" by a hash; the last stripe is the running block XOR the key. Diffusion hashes the block in
// digest-sized pieces, each prefixed with its index as a big-endian 32-bit number.
import { createHash } from 'node:crypto';

function xorInto(dst: Buffer, src: Buffer): void {
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

/** The block diffused in place with hash (sha256 for img2vm's keyslots). */
export function diffuse(block: Buffer, hash: string): void {
  const size = createHash(hash).digest().length;
  const whole = Buffer.from(block);
  const index = Buffer.alloc(4);
  for (let i = 0, off = 0; off < block.length; i++, off += size) {
    index.writeUInt32BE(i, 0);
    const piece = whole.subarray(off, Math.min(off + size, block.length));
    createHash(hash).update(index).update(piece).digest().copy(block, off, 0, piece.length);
  }
}

/** Splits key into `stripes` stripes of its length; random gives the bytes of every stripe but the last. */
export function afSplit(key: Buffer, stripes: number, hash: string, random: (n: number) => Buffer): Buffer {
  const n = key.length;
  const out = Buffer.alloc(n * stripes);
  const d = Buffer.alloc(n);
  for (let i = 0; i < stripes - 1; i++) {
    const s = random(n);
    s.copy(out, i * n);
    xorInto(d, s);
    diffuse(d, hash);
  }
  xorInto(d, key);
  d.copy(out, (stripes - 1) * n);
  return out;
}

/** The key back from its stripes (what cryptsetup does on open; the tests use it). */
export function afMerge(material: Buffer, keyLength: number, stripes: number, hash: string): Buffer {
  const d = Buffer.alloc(keyLength);
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(d, material.subarray(i * keyLength, (i + 1) * keyLength));
    diffuse(d, hash);
  }
  xorInto(d, material.subarray((stripes - 1) * keyLength, stripes * keyLength));
  return d;
}
