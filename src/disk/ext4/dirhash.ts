// The half-MD4 directory hash htree indexes are sorted by, with the signed-char variant mke2fs selects on x86.

function rotl(x: number, s: number): number {
  return ((x << s) | (x >>> (32 - s))) >>> 0;
}

const K2 = 0x5a827999;
const K3 = 0x6ed9eba1;

const F = (p: number, q: number, r: number): number => (r ^ (p & (q ^ r))) >>> 0;
const G = (p: number, q: number, r: number): number => ((p & q) + ((p ^ q) & r)) >>> 0;
const H = (p: number, q: number, r: number): number => (p ^ q ^ r) >>> 0;
const R1 = [3, 7, 11, 19];
const O2 = [1, 3, 5, 7, 0, 2, 4, 6];
const R2 = [3, 5, 9, 13];
const O3 = [3, 7, 2, 6, 1, 5, 0, 4];
const R3 = [3, 9, 11, 15];

function transform(buf: Uint32Array, x: Uint32Array): void {
  let a = buf[0]!;
  let b = buf[1]!;
  let c = buf[2]!;
  let d = buf[3]!;
  for (let i = 0; i < 8; i += 4) {
    a = rotl((a + F(b, c, d) + x[i]!) >>> 0, R1[0]!);
    d = rotl((d + F(a, b, c) + x[i + 1]!) >>> 0, R1[1]!);
    c = rotl((c + F(d, a, b) + x[i + 2]!) >>> 0, R1[2]!);
    b = rotl((b + F(c, d, a) + x[i + 3]!) >>> 0, R1[3]!);
  }
  for (let i = 0; i < 8; i += 4) {
    a = rotl((a + G(b, c, d) + x[O2[i]!]! + K2) >>> 0, R2[0]!);
    d = rotl((d + G(a, b, c) + x[O2[i + 1]!]! + K2) >>> 0, R2[1]!);
    c = rotl((c + G(d, a, b) + x[O2[i + 2]!]! + K2) >>> 0, R2[2]!);
    b = rotl((b + G(c, d, a) + x[O2[i + 3]!]! + K2) >>> 0, R2[3]!);
  }
  for (let i = 0; i < 8; i += 4) {
    a = rotl((a + H(b, c, d) + x[O3[i]!]! + K3) >>> 0, R3[0]!);
    d = rotl((d + H(a, b, c) + x[O3[i + 1]!]! + K3) >>> 0, R3[1]!);
    c = rotl((c + H(d, a, b) + x[O3[i + 2]!]! + K3) >>> 0, R3[2]!);
    b = rotl((b + H(c, d, a) + x[O3[i + 3]!]! + K3) >>> 0, R3[3]!);
  }
  buf[0] = buf[0]! + a;
  buf[1] = buf[1]! + b;
  buf[2] = buf[2]! + c;
  buf[3] = buf[3]! + d;
}

/** Packs up to num*4 bytes of the name into 32-bit words, padded with the length as ext4 does. */
function str2hashbuf(
  name: Uint8Array,
  start: number,
  len: number,
  out: Uint32Array,
  num: number,
  signed: boolean,
): void {
  let pad = (len | (len << 8)) >>> 0;
  pad = (pad | (pad << 16)) >>> 0;
  let val = pad;
  const n = Math.min(len, num * 4);
  let w = 0;
  for (let i = 0; i < n; i++) {
    let c = name[start + i]!;
    if (signed && c >= 128) c -= 256;
    val = (c + ((val << 8) >>> 0)) >>> 0;
    if (i % 4 === 3) {
      out[w++] = val;
      val = pad;
      num--;
    }
  }
  if (--num >= 0) out[w++] = val;
  while (--num >= 0) out[w++] = pad;
}

export class DirHasher {
  private readonly seed = new Uint32Array(4);
  private readonly buf = new Uint32Array(4);
  private readonly x = new Uint32Array(8);
  private readonly scratch = Buffer.alloc(256);

  constructor(
    seed: Uint8Array,
    private readonly signed: boolean,
  ) {
    const v = Buffer.from(seed.buffer, seed.byteOffset, 16);
    for (let i = 0; i < 4; i++) this.seed[i] = v.readUInt32LE(4 * i);
    if (this.seed.every((s) => s === 0)) this.seed.set([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  }

  /** The major hash of a name (bytes, or a latin1 binary string), low bit clear, as the kernel computes it for lookups. */
  hash(input: Uint8Array | string): number {
    // A name of up to 255 bytes (all of them in a directory) is hashed in place, without a buffer of its own.
    let name: Uint8Array;
    let len: number;
    if (typeof input === 'string') {
      const n = input.length <= 255 ? this.scratch.write(input, 0, 'latin1') : 0;
      name = n === input.length ? this.scratch : Buffer.from(input, 'latin1');
      len = input.length;
    } else {
      name = input;
      len = input.length;
    }
    this.buf.set(this.seed);
    let p = 0;
    while (len > 0) {
      str2hashbuf(name, p, len, this.x, 8, this.signed);
      transform(this.buf, this.x);
      len -= 32;
      p += 32;
    }
    let h = (this.buf[1]! & ~1) >>> 0;
    // The kernel keeps the value that means end-of-directory for 32-bit readdir cookies out of the index.
    if (h === 0xfffffffe) h = 0xfffffffc;
    return h;
  }
}
