// The ext4 writer's building blocks against published values: crc32c, timestamps, geometry, ACLs (the directory hash against debugfs: primitives.tools.test.ts).
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../../src/core/crc32c.js';
import {
  advance,
  backupGroups,
  BACKUP_REGION,
  isBackupGroup,
  placeRun,
  skipReserved,
  trimBlocks,
} from '../../../src/disk/ext4/geometry.js';
import { encodeInode, encodeTime, MAX_TIME, MIN_TIME } from '../../../src/disk/ext4/inode.js';
import { aclToDisk } from '../../../src/disk/ext4/xattr.js';

describe('crc32c', () => {
  it('matches the published check value and chains like the kernel crc32c_le', () => {
    const s = Buffer.from('123456789');
    expect((crc32c(0xffffffff, s) ^ 0xffffffff) >>> 0).toBe(0xe3069283);
    const long = Buffer.from(Buffer.alloc(1000).map((_, i) => (i * 7 + 3) & 0xff));
    const whole = crc32c(0x12345678, long);
    expect(crc32c(crc32c(0x12345678, long, 0, 333), long, 333)).toBe(whole);
    // The slicing-by-8 path and the byte path agree.
    let bytewise = 0x12345678;
    for (let i = 0; i < long.length; i++) bytewise = crc32c(bytewise, long, i, i + 1);
    expect(bytewise).toBe(whole);
  });
});

describe('timestamps', () => {
  it('encode seconds with epoch bits and nanoseconds in the extra field', () => {
    expect(encodeTime({ sec: 0, nsec: 0 })).toEqual([0, 0]);
    expect(encodeTime({ sec: 1, nsec: 999_999_999 })).toEqual([1, 999_999_999 * 4]);
    // Before 1970: the signed 32-bit field, epoch bits 0.
    expect(encodeTime({ sec: -1, nsec: 5 })).toEqual([-1, 20]);
    expect(encodeTime({ sec: MIN_TIME, nsec: 0 })).toEqual([-(2 ** 31), 0]);
    // After 2038: epoch bit 1.
    expect(encodeTime({ sec: 2 ** 31, nsec: 0 })).toEqual([-(2 ** 31), 1]);
    expect(encodeTime({ sec: 2 ** 32 + 7, nsec: 1 })).toEqual([7, 5]);
    // Out of range is clamped, never wrapped.
    expect(encodeTime({ sec: -1e12, nsec: 0 })).toEqual([-(2 ** 31), 0]);
    expect(encodeTime({ sec: 1e12, nsec: 0 })).toEqual(encodeTime({ sec: MAX_TIME, nsec: 0 }));
    expect(encodeTime({ sec: 0, nsec: 5e9 })).toEqual([0, 999_999_999 * 4]);
  });

  it('stores i_blocks and sizes beyond 32 bits in their high fields', () => {
    const b = Buffer.alloc(256);
    const z = { sec: 0, nsec: 0 };
    encodeInode(
      b,
      0,
      {
        mode: 0o100644,
        uid: 0x12345,
        gid: 0x67890,
        size: 5 * 2 ** 32 + 3,
        atime: z,
        ctime: z,
        mtime: z,
        crtime: z,
        links: 1,
        sectors: 3 * 2 ** 32 + 9,
        flags: 0,
        fileAcl: 2 ** 33 + 1,
      },
      12,
      0,
    );
    expect(b.readUInt32LE(0x04)).toBe(3);
    expect(b.readUInt32LE(0x6c)).toBe(5);
    expect(b.readUInt32LE(0x1c)).toBe(9);
    expect(b.readUInt16LE(0x74)).toBe(3);
    expect(b.readUInt32LE(0x68)).toBe(1);
    expect(b.readUInt16LE(0x76)).toBe(2);
    expect(b.readUInt16LE(0x02) + b.readUInt16LE(0x78) * 65536).toBe(0x12345);
    expect(b.readUInt16LE(0x18) + b.readUInt16LE(0x7a) * 65536).toBe(0x67890);
  });
});

describe('geometry', () => {
  it('puts backup superblocks in 0, 1 and powers of 3, 5, 7', () => {
    expect(backupGroups(100)).toEqual([1, 3, 5, 7, 9, 25, 27, 49, 81]);
    expect([0, 1, 2, 3, 4, 5, 25, 125, 243, 343, 6561, 15625].map(isBackupGroup)).toEqual([
      true,
      true,
      false,
      true,
      false,
      true,
      true,
      true,
      true,
      true,
      true,
      true,
    ]);
  });

  it('never allocates inside a backup region', () => {
    expect(skipReserved(0)).toBe(BACKUP_REGION);
    expect(skipReserved(32768 + 5)).toBe(32768 + BACKUP_REGION);
    expect(skipReserved(2 * 32768)).toBe(2 * 32768);
    expect(advance(32767, 1)).toBe(32768 + BACKUP_REGION);
    // 32511 blocks left in group 0, the backup region of group 1 skipped, 257 more.
    expect(advance(BACKUP_REGION, 32768)).toBe(32768 + 2 * BACKUP_REGION);
    expect(placeRun(32000, 1000)).toBe(32768 + BACKUP_REGION);
    expect(placeRun(65536 - 100, 1000)).toBe(65536 - 100);
  });

  it('drops a last group too small to hold its overhead, as mke2fs does', () => {
    expect(trimBlocks(32768 + 100)).toBe(32768);
    expect(trimBlocks(32768 + BACKUP_REGION + 50)).toBe(32768 + BACKUP_REGION + 50);
    expect(trimBlocks(2 * 32768 + 10)).toBe(2 * 32768);
    expect(trimBlocks(2 * 32768 + 60)).toBe(2 * 32768 + 60);
  });
});

describe('POSIX ACLs', () => {
  it('convert from the xattr format to ext4 short and long entries', () => {
    const x = Buffer.alloc(4 + 5 * 8);
    x.writeUInt32LE(2, 0);
    const ents: Array<[number, number, number]> = [
      [1, 7, 0xffffffff],
      [2, 5, 1000],
      [4, 5, 0xffffffff],
      [0x10, 7, 0xffffffff],
      [0x20, 4, 0xffffffff],
    ];
    ents.forEach(([tag, perm, id], i) => {
      x.writeUInt16LE(tag, 4 + 8 * i);
      x.writeUInt16LE(perm, 6 + 8 * i);
      x.writeUInt32LE(id, 8 + 8 * i);
    });
    const d = aclToDisk(x, () => 'test');
    expect(d.toString('hex')).toBe('01000000' + '01000700' + '02000500e8030000' + '04000500' + '10000700' + '20000400');
    expect(() => aclToDisk(Buffer.from('02000000010007', 'hex'), () => 'bad')).toThrow(/not a POSIX ACL/);
  });
});
