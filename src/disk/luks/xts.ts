// aes-xts-plain64 as dm-crypt does it: each sector encrypted on its own, its tweak the sector number (64-bit little-endian).
import { createCipheriv, createDecipheriv } from 'node:crypto';

/** 512-bit keys: two AES-256 keys, the data key and the tweak key. */
export const XTS_KEY_BYTES = 64;

function tweak(sector: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(BigInt(sector), 0);
  return iv;
}

function run(decrypt: boolean, key: Buffer, data: Uint8Array, firstSector: number, sectorSize: number): Buffer {
  if (data.length % sectorSize !== 0)
    throw new Error(`xts: ${data.length} bytes is not whole ${sectorSize}-byte sectors`);
  const out = Buffer.allocUnsafe(data.length);
  for (let off = 0, s = firstSector; off < data.length; off += sectorSize, s++) {
    const c = decrypt ? createDecipheriv('aes-256-xts', key, tweak(s)) : createCipheriv('aes-256-xts', key, tweak(s));
    const n = c.update(data.subarray(off, off + sectorSize)).copy(out, off);
    c.final().copy(out, off + n);
  }
  return out;
}

/** Encrypts whole sectors; the first is sector number firstSector of its volume. */
export function xtsEncrypt(key: Buffer, data: Uint8Array, firstSector: number, sectorSize: number): Buffer {
  return run(false, key, data, firstSector, sectorSize);
}

export function xtsDecrypt(key: Buffer, data: Uint8Array, firstSector: number, sectorSize: number): Buffer {
  return run(true, key, data, firstSector, sectorSize);
}
