// Every random choice img2vm makes (UUIDs, salts, hash seeds) comes from here, so --seed makes output reproducible.
import { createHash, randomBytes } from 'node:crypto';

export interface Random {
  bytes(n: number): Buffer;
  /** An RFC 4122 version-4 UUID string. */
  uuid(): string;
  /** True when the sequence is fixed by a seed. */
  readonly seeded: boolean;
  /**
   * An independent stream for one purpose (the layout, the root file system): with a seed it depends only on
   * the seed and the label, so a plan computed twice draws the same values whatever else was drawn before.
   */
  fork(label: string): Random;
}

/** Seeded: SHA-256 in counter mode over the seed and a label, so each use gets its own stream. */
export function createRandom(seed?: string): Random {
  let counter = 0;
  const bytes = (n: number): Buffer => {
    if (seed === undefined) return randomBytes(n);
    const out: Buffer[] = [];
    let have = 0;
    while (have < n) {
      const h = createHash('sha256').update(`img2vm:${seed}:${counter++}`).digest();
      out.push(h);
      have += h.length;
    }
    return Buffer.concat(out).subarray(0, n);
  };
  return {
    seeded: seed !== undefined,
    fork: (label) => createRandom(seed === undefined ? undefined : `${seed}/${label}`),
    bytes,
    uuid() {
      const b = bytes(16);
      b[6] = (b[6]! & 0x0f) | 0x40;
      b[8] = (b[8]! & 0x3f) | 0x80;
      const h = b.toString('hex');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    },
  };
}
