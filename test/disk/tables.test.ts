// Unit tests for MBR and GPT structures as bytes: field offsets, CHS, GUID encoding, CRCs, backup copies, writing to files.
import { mkdtemp, open, rm } from 'node:fs/promises';
import { readAt } from './cases.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRandom } from '../../src/core/random.js';
import { GiB, MiB } from '../../src/core/units.js';
import { ATTR_LEGACY_BIOS_BOOTABLE, crc32, encodeGuid, gptSectors } from '../../src/disk/gpt.js';
import { decodeGuid, writePartitionTable } from './table-file.js';
import { planLayout, type DiskLayout } from '../../src/disk/layout.js';
import { chs, mbrPartitionSector, protectiveMbr } from '../../src/disk/mbr.js';
import { partitionTableBytes } from '../../src/disk/table.js';

const layout = (
  boot: 'bios' | 'uefi' | 'hybrid',
  diskSize = 3 * GiB,
  extra: Partial<Parameters<typeof planLayout>[0]> = {},
) => planLayout({ boot, rootSize: GiB, diskSize, random: createRandom('tables'), ...extra });

interface MbrEntry {
  status: number;
  chsFirst: number[];
  type: number;
  chsLast: number[];
  lba: number;
  count: number;
}
function mbrEntries(s: Buffer): MbrEntry[] {
  return [0, 1, 2, 3].map((i) => {
    const o = 0x1be + i * 16;
    return {
      status: s[o]!,
      chsFirst: [...s.subarray(o + 1, o + 4)],
      type: s[o + 4]!,
      chsLast: [...s.subarray(o + 5, o + 8)],
      lba: s.readUInt32LE(o + 8),
      count: s.readUInt32LE(o + 12),
    };
  });
}

describe('CHS addresses', () => {
  it('uses 255 heads × 63 sectors in range and 1023/254/63 beyond', () => {
    expect([...chs(0)]).toEqual([0, 1, 0]);
    expect([...chs(1)]).toEqual([0, 2, 0]);
    expect([...chs(2048)]).toEqual([32, 33, 0]); // what fdisk writes for the first partition
    // cylinder 1023 is the last one that fits in 10 bits: high bits go to the sector byte
    const lastInRange = 1024 * 255 * 63 - 1;
    expect([...chs(lastInRange)]).toEqual([254, 0xc0 | 63, 0xff]);
    expect([...chs(lastInRange + 1)]).toEqual([0xfe, 0xff, 0xff]);
    expect([...chs(2 ** 32)]).toEqual([0xfe, 0xff, 0xff]);
  });
});

describe('MBR partition sector', () => {
  it('lays out signature, entries and 0x55AA', () => {
    const l = layout('bios', 3 * GiB, { bootPartitionSize: 256 * MiB });
    const s = mbrPartitionSector(l);
    expect(s.length).toBe(512);
    expect(s.subarray(0, 440).every((b) => b === 0)).toBe(true);
    expect(s.readUInt32LE(0x1b8)).toBe(l.mbrSignature);
    expect(s.readUInt16LE(0x1bc)).toBe(0);
    expect([s[510], s[511]]).toEqual([0x55, 0xaa]);
    const [boot, root, e3, e4] = mbrEntries(s);
    expect(boot).toEqual({
      status: 0x80,
      chsFirst: [32, 33, 0],
      type: 0x83,
      chsLast: [...chs(2048 + 524288 - 1)],
      lba: 2048,
      count: 524288,
    });
    expect(root).toEqual({
      status: 0,
      chsFirst: [...chs(526336)],
      type: 0x83,
      chsLast: [...chs(6291455)],
      lba: 526336,
      count: 6291456 - 526336,
    });
    expect(e3!.type + e4!.type + e3!.count + e4!.count).toBe(0);
  });

  it('puts the boot code in the first 440 bytes and refuses more', () => {
    const l = layout('bios');
    const code = Buffer.alloc(440, 0xab);
    const s = mbrPartitionSector(l, code);
    expect(s.subarray(0, 440).equals(code)).toBe(true);
    expect(s.readUInt32LE(0x1b8)).toBe(l.mbrSignature);
    expect(() => mbrPartitionSector(l, Buffer.alloc(512))).toThrow(RangeError);
  });

  it('refuses GPT layouts and GPT-only partitions', () => {
    expect(() => mbrPartitionSector(layout('uefi'))).toThrow(/protectiveMbr/);
    const l = layout('hybrid');
    expect(() => mbrPartitionSector({ ...l, table: 'mbr' })).toThrow(/no MBR type/);
  });
});

describe('protective MBR', () => {
  it('has one 0xEE entry from LBA 1 over the disk, no signature, not active', () => {
    const l = layout('hybrid');
    const s = protectiveMbr(l);
    expect(s.readUInt32LE(0x1b8)).toBe(0);
    const [pe, ...rest] = mbrEntries(s);
    expect(pe).toEqual({
      status: 0,
      chsFirst: [0, 2, 0],
      type: 0xee,
      chsLast: [...chs(6291455)],
      lba: 1,
      count: 6291455,
    });
    expect(rest.every((e) => e.type === 0 && e.count === 0)).toBe(true);
    expect([s[510], s[511]]).toEqual([0x55, 0xaa]);
  });

  it('caps the size at 0xFFFFFFFF sectors and marks an unrepresentable end CHS 0xFFFFFF', () => {
    const s = protectiveMbr(layout('uefi', 3 * 1024 * GiB));
    const [pe] = mbrEntries(s);
    expect(pe!.count).toBe(0xffffffff);
    expect(pe!.chsLast).toEqual([0xff, 0xff, 0xff]);
  });

  it('refuses MBR layouts', () => {
    expect(() => protectiveMbr(layout('bios'))).toThrow(/mbrPartitionSector/);
  });
});

describe('GUIDs and CRC-32', () => {
  it('stores GUIDs mixed-endian', () => {
    expect(encodeGuid('C12A7328-F81F-11D2-BA4B-00A0C93EC93B').toString('hex')).toBe('28732ac11ff8d211ba4b00a0c93ec93b');
    expect(encodeGuid('21686148-6449-6e6f-744e-656564454649').toString('latin1')).toBe('Hah!IdontNeedEFI');
    expect(decodeGuid(encodeGuid('4f68bce3-e8cd-4db1-96e7-fbcaf984b709'))).toBe('4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709');
    expect(() => encodeGuid('not-a-guid')).toThrow(/not a GUID/);
  });

  it('computes the IEEE CRC-32 (check value, and zlib when this Node has it)', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
    const z = (zlib as { crc32?: (b: Uint8Array) => number }).crc32;
    if (z) {
      const data = createRandom('crc').bytes(20_000);
      expect(crc32(data)).toBe(z(data));
    }
  });
});

/** Reads a GPT header back field by field, the way firmware would check it. */
function parseHeader(h: Buffer) {
  const zeroed = Buffer.from(h.subarray(0, 92));
  zeroed.writeUInt32LE(0, 16);
  return {
    signature: h.subarray(0, 8).toString('latin1'),
    revision: h.readUInt32LE(8),
    size: h.readUInt32LE(12),
    crcOk: h.readUInt32LE(16) === crc32(zeroed),
    reserved: h.readUInt32LE(20),
    myLba: Number(h.readBigUInt64LE(24)),
    altLba: Number(h.readBigUInt64LE(32)),
    firstUsable: Number(h.readBigUInt64LE(40)),
    lastUsable: Number(h.readBigUInt64LE(48)),
    diskGuid: decodeGuid(h.subarray(56, 72)),
    entriesLba: Number(h.readBigUInt64LE(72)),
    count: h.readUInt32LE(80),
    entrySize: h.readUInt32LE(84),
    entriesCrc: h.readUInt32LE(88),
    restZero: h.subarray(92).every((b) => b === 0),
  };
}

describe('GPT', () => {
  const l = layout('hybrid', 3 * GiB, { bootPartitionSize: 256 * MiB });
  const g = gptSectors(l);
  const lastLba = (3 * GiB) / 512 - 1;

  it('writes a primary header at LBA 1 and a backup at the last LBA that point at each other', () => {
    const p = parseHeader(g.primaryHeader);
    const b = parseHeader(g.backupHeader);
    const common = {
      signature: 'EFI PART',
      revision: 0x10000,
      size: 92,
      crcOk: true,
      reserved: 0,
      firstUsable: 34,
      lastUsable: lastLba - 33,
      diskGuid: l.diskGuid.toUpperCase(),
      count: 128,
      entrySize: 128,
      entriesCrc: crc32(g.entries),
      restZero: true,
    };
    expect(p).toEqual({ ...common, myLba: 1, altLba: lastLba, entriesLba: 2 });
    expect(b).toEqual({ ...common, myLba: lastLba, altLba: 1, entriesLba: lastLba - 32 });
    expect(g.backupHeaderLba).toBe(lastLba);
    expect(g.backupEntriesLba).toBe(lastLba - 32);
  });

  it('fills one 128-byte entry per partition, in index order, and leaves the rest zero', () => {
    expect(g.entries.length).toBe(128 * 128);
    l.partitions.forEach((part, i) => {
      const e = g.entries.subarray(i * 128, (i + 1) * 128);
      expect(decodeGuid(e.subarray(0, 16))).toBe(part.gptType);
      expect(decodeGuid(e.subarray(16, 32))).toBe(part.guid.toUpperCase());
      expect(Number(e.readBigUInt64LE(32))).toBe(part.start / 512);
      expect(Number(e.readBigUInt64LE(40))).toBe((part.start + part.size) / 512 - 1);
      expect(e.readBigUInt64LE(48)).toBe(0n);
      expect(e.subarray(56).toString('utf16le').replace(/\0+$/, '')).toBe(part.name);
    });
    expect(g.entries.subarray(l.partitions.length * 128).every((b) => b === 0)).toBe(true);
  });

  it('sets the legacy-BIOS-bootable attribute only for partitions planned bootable', () => {
    const bootable: DiskLayout = { ...l, partitions: l.partitions.map((p) => ({ ...p, bootable: p.role === 'root' })) };
    const e = gptSectors(bootable).entries;
    expect(e.readBigUInt64LE(3 * 128 + 48)).toBe(ATTR_LEGACY_BIOS_BOOTABLE);
    expect(ATTR_LEGACY_BIOS_BOOTABLE).toBe(4n);
    expect(e.readBigUInt64LE(2 * 128 + 48)).toBe(0n);
  });

  it('refuses names over 36 UTF-16 units and partitions outside the usable area', () => {
    const long: DiskLayout = { ...l, partitions: [{ ...l.partitions[0]!, name: 'x'.repeat(37) }] };
    expect(() => gptSectors(long)).toThrow(/longer than 36/);
    const last = l.partitions.at(-1)!;
    const over: DiskLayout = { ...l, partitions: [...l.partitions.slice(0, -1), { ...last, size: last.size + MiB }] };
    expect(() => gptSectors(over)).toThrow(/outside the usable/);
  });
});

describe('partitionTableBytes', () => {
  it('is sector 0 alone for MBR', () => {
    const l = layout('bios');
    const chunks = partitionTableBytes(l);
    expect(chunks.map((c) => [c.offset, c.bytes.length])).toEqual([[0, 512]]);
    expect(chunks[0]!.bytes.equals(mbrPartitionSector(l))).toBe(true);
  });

  it('is LBA 0–33 and the last 33 sectors for GPT', () => {
    const l = layout('uefi');
    const chunks = partitionTableBytes(l);
    expect(chunks.map((c) => [c.offset, c.bytes.length])).toEqual([
      [0, 34 * 512],
      [3 * GiB - 33 * 512, 33 * 512],
    ]);
    const g = gptSectors(l);
    const head = chunks[0]!;
    const tail = chunks[1]!;
    expect(head.bytes.subarray(0, 512).equals(protectiveMbr(l))).toBe(true);
    expect(head.bytes.subarray(512, 1024).equals(g.primaryHeader)).toBe(true);
    expect(head.bytes.subarray(1024).equals(tail.bytes.subarray(0, 32 * 512))).toBe(true);
    expect(tail.bytes.subarray(32 * 512).equals(g.backupHeader)).toBe(true);
  });
});

describe('writePartitionTable', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'img2vm-table-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const size = 200 * MiB;
  const read = readAt;

  for (const [name, boot] of [
    ['mbr', 'bios'],
    ['gpt', 'hybrid'],
  ] as const) {
    it(`writes the ${name} chunks at their offsets and touches nothing else (fd and FileHandle)`, async () => {
      const l = planLayout({ boot, rootSize: 100 * MiB, diskSize: size, random: createRandom('write') });
      for (const how of ['fd', 'handle'] as const) {
        const path = join(dir, `${name}-${how}.img`);
        const fh = await open(path, 'w+');
        try {
          await fh.truncate(size);
          // markers inside every partition and just around the table areas must survive
          const marker = Buffer.from('partition data');
          for (const p of l.partitions) {
            await fh.write(marker, 0, marker.length, p.start);
            await fh.write(marker, 0, marker.length, p.start + p.size - marker.length);
          }
          await (how === 'fd' ? writePartitionTable(fh.fd, l) : writePartitionTable(fh, l));
          for (const c of partitionTableBytes(l))
            expect((await read(path, c.offset, c.bytes.length)).equals(c.bytes)).toBe(true);
          for (const p of l.partitions) {
            expect((await read(path, p.start, marker.length)).equals(marker)).toBe(true);
            expect((await read(path, p.start + p.size - marker.length, marker.length)).equals(marker)).toBe(true);
          }
          expect((await fh.stat()).size).toBe(size);
        } finally {
          await fh.close();
        }
      }
    });
  }

  it('keeps boot code already in sector 0 unless new boot code is given', async () => {
    const l = planLayout({ boot: 'bios', rootSize: 100 * MiB, diskSize: size, random: createRandom('boot') });
    const path = join(dir, 'bootcode.img');
    const fh = await open(path, 'w+');
    try {
      await fh.truncate(size);
      const old = Buffer.alloc(512, 0xcc);
      await fh.write(old, 0, 512, 0);
      await writePartitionTable(fh, l);
      const s = await read(path, 0, 512);
      expect(s.subarray(0, 440).equals(old.subarray(0, 440))).toBe(true);
      expect(s.subarray(440).equals(mbrPartitionSector(l).subarray(440))).toBe(true);
      const code = Buffer.alloc(300, 0x11);
      await writePartitionTable(fh.fd, l, code);
      expect((await read(path, 0, 512)).equals(mbrPartitionSector(l, code))).toBe(true);
    } finally {
      await fh.close();
    }
  });

  it('refuses a file whose size differs from the layout', async () => {
    const l = planLayout({ boot: 'uefi', rootSize: 100 * MiB, diskSize: size, random: createRandom('size') });
    const path = join(dir, 'short.img');
    const fh = await open(path, 'w+');
    try {
      await fh.truncate(size - MiB);
      await expect(writePartitionTable(fh, l)).rejects.toThrow(/size the file first/);
      expect((await fh.stat()).size).toBe(size - MiB);
    } finally {
      await fh.close();
    }
  });
});
