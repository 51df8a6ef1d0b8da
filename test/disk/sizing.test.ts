// How many inodes a file system gets for a tree: the tree's, half as many spare, and no more spare than MAX_SPARE_INODES.
import { describe, expect, it } from 'vitest';
import { inodesFor, MAX_SPARE_INODES } from '../../src/disk/sizing.js';

describe('inodesFor', () => {
  it('gives small and middling trees half again as spare, as before', () => {
    expect(inodesFor({ blocks4k: 0, entries: 10 })).toBe(16384);
    expect(inodesFor({ blocks4k: 0, entries: 10_000 })).toBe(23552); // 15,000 + 8,192, rounded up to 1024
    expect(inodesFor({ blocks4k: 0, entries: 500_000 })).toBe(758784);
  });

  it('caps the spare inodes of a big tree: each costs 4 KiB of file system (32768 inodes per 128 MiB group)', () => {
    const entries = 1_000_000;
    const n = inodesFor({ blocks4k: 0, entries });
    expect(n).toBeLessThanOrEqual(entries + MAX_SPARE_INODES + 8192 + 1023);
    expect(n).toBeGreaterThanOrEqual(entries + MAX_SPARE_INODES);
    // 39 groups of 128 MiB rather than 46 with half again as spare.
    expect(Math.ceil(n / 32768)).toBe(39);
  });
});
