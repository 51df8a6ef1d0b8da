// Size parsing and formatting: "4G", "512M", "1.5GiB", plain bytes.
import { Img2vmError } from './errors.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const SUFFIX: Record<string, number> = {
  '': 1,
  b: 1,
  k: KiB,
  kb: KiB,
  kib: KiB,
  m: MiB,
  mb: MiB,
  mib: MiB,
  g: GiB,
  gb: GiB,
  gib: GiB,
  t: 1024 * GiB,
  tb: 1024 * GiB,
  tib: 1024 * GiB,
};

/** Parses a size with binary units (K, M, G, T; "MB" and "MiB" both mean 2^20, as qemu-img does). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const mult = m ? SUFFIX[m[2]!.toLowerCase()] : undefined;
  if (!m || mult === undefined) {
    throw new Img2vmError('usage', `invalid size "${text}"`, 'use a number with an optional unit: 512M, 4G, 1.5G');
  }
  const bytes = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new Img2vmError('usage', `invalid size "${text}"`, 'the size must be positive');
  }
  return bytes;
}

export function formatSize(bytes: number): string {
  if (bytes >= GiB) return `${(bytes / GiB).toFixed(bytes % GiB === 0 ? 0 : 2)}G`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 1)}M`;
  if (bytes >= KiB) return `${(bytes / KiB).toFixed(0)}K`;
  return `${bytes}B`;
}

export function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}
