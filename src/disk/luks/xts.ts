// aes-xts-plain64 as dm-crypt does it: each sector encrypted on its own, its tweak the sector number (64-bit little-endian).
//
// Node's own aes-256-xts needs a cipher object per sector, which makes 512-byte sectors cost far more in setup
// than in AES. So XTS is composed here from AES-ECB over the whole buffer at once, as IEEE 1619 defines it: each
// sector's first tweak is its number encrypted with the second key; every 16-byte block is XORed with its tweak
// before and after AES with the first key; the next block's tweak is the last one multiplied by x in GF(2^128)
// (a shift left by one bit of the little-endian number, folding 0x87 back in). Sectors are whole blocks, so no
// ciphertext stealing is needed. The tests check it against Node's aes-256-xts.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { endianness } from 'node:os';

/** 512-bit keys: two AES-256 keys, the data key and the tweak key. */
export const XTS_KEY_BYTES = 64;

function ecb(encrypt: boolean, key: Buffer, data: Uint8Array): Buffer {
  const c = encrypt ? createCipheriv('aes-256-ecb', key, null) : createDecipheriv('aes-256-ecb', key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** Every block's tweak, as 32-bit words in host (little-endian) order. */
function tweaks(key: Buffer, words: number, firstSector: number, sectorSize: number): Uint32Array {
  const sectors = (words * 4) / sectorSize;
  const ivs = Buffer.alloc(sectors * 16);
  for (let s = 0; s < sectors; s++) {
    const n = firstSector + s;
    ivs.writeUInt32LE(n % 0x100000000, s * 16);
    ivs.writeUInt32LE(Math.floor(n / 0x100000000), s * 16 + 4);
  }
  const first = ecb(true, key.subarray(32, 64), ivs);
  const t = new Uint32Array(words);
  const per = sectorSize / 16;
  for (let s = 0, o = 0; s < sectors; s++) {
    let w0 = first.readUInt32LE(s * 16);
    let w1 = first.readUInt32LE(s * 16 + 4);
    let w2 = first.readUInt32LE(s * 16 + 8);
    let w3 = first.readUInt32LE(s * 16 + 12);
    for (let j = 0; j < per; j++, o += 4) {
      t[o] = w0;
      t[o + 1] = w1;
      t[o + 2] = w2;
      t[o + 3] = w3;
      const carry = w3 >>> 31;
      w3 = ((w3 << 1) | (w2 >>> 31)) >>> 0;
      w2 = ((w2 << 1) | (w1 >>> 31)) >>> 0;
      w1 = ((w1 << 1) | (w0 >>> 31)) >>> 0;
      w0 = ((w0 << 1) ^ (carry ? 0x87 : 0)) >>> 0;
    }
  }
  return t;
}

/** A copy of bytes as 32-bit words (its own, aligned buffer), XORed with t. */
function xorWords(bytes: Uint8Array, t: Uint32Array): Uint32Array {
  const w = new Uint32Array(t.length);
  new Uint8Array(w.buffer).set(bytes);
  for (let i = 0; i < w.length; i++) w[i]! ^= t[i]!;
  return w;
}

/** Per sector with Node's own XTS: for a big-endian host, where the word arithmetic above does not hold. */
function perSector(decrypt: boolean, key: Buffer, data: Uint8Array, firstSector: number, sectorSize: number): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  for (let off = 0, s = firstSector; off < data.length; off += sectorSize, s++) {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64LE(BigInt(s), 0);
    const c = decrypt ? createDecipheriv('aes-256-xts', key, iv) : createCipheriv('aes-256-xts', key, iv);
    const n = c.update(data.subarray(off, off + sectorSize)).copy(out, off);
    c.final().copy(out, off + n);
  }
  return out;
}

function run(decrypt: boolean, key: Buffer, data: Uint8Array, firstSector: number, sectorSize: number): Buffer {
  if (data.length % sectorSize !== 0)
    throw new Error(`xts: ${data.length} bytes is not whole ${sectorSize}-byte sectors`);
  if (key.length !== XTS_KEY_BYTES) throw new Error(`xts: a ${key.length}-byte key, not ${XTS_KEY_BYTES}`);
  if (endianness() !== 'LE') return perSector(decrypt, key, data, firstSector, sectorSize);
  const t = tweaks(key, data.length / 4, firstSector, sectorSize);
  const mid = ecb(!decrypt, key.subarray(0, 32), new Uint8Array(xorWords(data, t).buffer));
  return Buffer.from(xorWords(mid, t).buffer);
}

/** Encrypts whole sectors; the first is sector number firstSector of its volume. */
export function xtsEncrypt(key: Buffer, data: Uint8Array, firstSector: number, sectorSize: number): Buffer {
  return run(false, key, data, firstSector, sectorSize);
}

export function xtsDecrypt(key: Buffer, data: Uint8Array, firstSector: number, sectorSize: number): Buffer {
  return run(true, key, data, firstSector, sectorSize);
}
