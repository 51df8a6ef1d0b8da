// The FAT32 writer without host tools: names, timestamps, geometry, size errors, what gets written where, and golden bytes.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { MiB } from '../../src/core/units.js';
import type { BlockTarget } from '../../src/disk/target.js';
import { planFat32, writeFat32 } from '../../src/disk/fat32.js';
import { GOLDEN_SMALL, OPTS, SMALL, text } from './fat32-cases.js';
import { encodeLongEntries, fatTime } from '../../src/disk/fat32/entries.js';
import { fat32Geometry } from '../../src/disk/fat32/geometry.js';
import { assignShortNames, CASE_LOWER_BASE, CASE_LOWER_EXT, shortNameChecksum } from '../../src/disk/fat32/names.js';

/** A sparse in-memory disk that records every write. */
class MemoryTarget implements BlockTarget {
  readonly writes: { offset: number; length: number }[] = [];
  private readonly blocks = new Map<number, Buffer>();
  private bytes = OPTS.offset + OPTS.size;
  write(buf: Uint8Array, offset: number): void {
    this.writes.push({ offset, length: buf.length });
    for (let i = 0; i < buf.length;) {
      const at = offset + i;
      const block = Math.floor(at / 65536);
      const within = at % 65536;
      const n = Math.min(buf.length - i, 65536 - within);
      let b = this.blocks.get(block);
      if (!b) this.blocks.set(block, (b = Buffer.alloc(65536)));
      b.set(buf.subarray(i, i + n), within);
      i += n;
    }
    this.bytes = Math.max(this.bytes, offset + buf.length);
  }
  read(buf: Uint8Array, offset: number): number {
    buf.fill(0);
    for (let i = 0; i < buf.length;) {
      const at = offset + i;
      const within = at % 65536;
      const n = Math.min(buf.length - i, 65536 - within);
      const b = this.blocks.get(Math.floor(at / 65536));
      if (b) buf.set(b.subarray(within, within + n), i);
      i += n;
    }
    return buf.length;
  }
  size(): number {
    return this.bytes;
  }
  resize(n: number): void {
    this.bytes = n;
  }
  close(): void {}
  sha256(offset: number, length: number): string {
    const h = createHash('sha256');
    const chunk = Buffer.alloc(MiB);
    for (let at = 0; at < length; at += MiB) {
      const part = chunk.subarray(0, Math.min(MiB, length - at));
      this.read(part, offset + at);
      h.update(part);
    }
    return h.digest('hex');
  }
}

const short = (names: string[]) =>
  assignShortNames(names).map((s) => ({ name: s.bytes.toString('latin1'), flags: s.caseFlags, long: s.long }));

describe('short names', () => {
  it('keeps 8.3 names as they are, with NT case flags for lower-case parts and no long entries', () => {
    expect(short(['BOOTX64.EFI', 'loader', 'foo.txt', 'README.txt', 'x86_64'])).toEqual([
      { name: 'BOOTX64 EFI', flags: 0, long: false },
      { name: 'LOADER     ', flags: CASE_LOWER_BASE, long: false },
      { name: 'FOO     TXT', flags: CASE_LOWER_BASE | CASE_LOWER_EXT, long: false },
      { name: 'README  TXT', flags: CASE_LOWER_EXT, long: false },
      { name: 'X86_64     ', flags: CASE_LOWER_BASE, long: false },
    ]);
  });

  it('gives mixed-case 8.3 names their upper-case basis without a tail, plus a long name', () => {
    expect(short(['Mixed.Txt', 'BootX64.efi'])).toEqual([
      { name: 'MIXED   TXT', flags: 0, long: true },
      { name: 'BOOTX64 EFI', flags: 0, long: true },
    ]);
  });

  it('makes basis~N for the names img2vm writes, as mtools and Linux do', () => {
    expect(
      short([
        'systemd-bootx64.efi',
        'loader.conf',
        'img2vm-6.1.0-28-cloud-amd64.conf',
        'initrd.img-6.1.0-28-cloud-amd64',
        '.hidden',
        'a+b.txt',
        'ünïcode file.txt',
        'a b[1];=,+.txt',
      ]).map((s) => s.name),
    ).toEqual([
      'SYSTEM~1EFI',
      'LOADER~1CON',
      'IMG2VM~1CON',
      'INITRD~10-2',
      'HIDDEN~1   ',
      'A_B~1   TXT',
      '_N_COD~1TXT',
      'AB_1__~1TXT',
    ]);
  });

  it('counts tails up past ~9, shortening the base, and never takes a name an exact 8.3 entry holds', () => {
    const names = [
      'SYSTEM~1.EFI',
      ...Array.from({ length: 11 }, (_, i) => `systemd-boot-${String(i).padStart(2, '0')}.efi`),
    ];
    expect(short(names).map((s) => s.name)).toEqual([
      'SYSTEM~1EFI',
      'SYSTEM~2EFI',
      'SYSTEM~3EFI',
      'SYSTEM~4EFI',
      'SYSTEM~5EFI',
      'SYSTEM~6EFI',
      'SYSTEM~7EFI',
      'SYSTEM~8EFI',
      'SYSTEM~9EFI',
      'SYSTE~10EFI',
      'SYSTE~11EFI',
      'SYSTE~12EFI',
    ]);
  });

  it('checksums the short name into every long entry, and stores UTF-16 with 0x0000 then 0xFFFF padding', () => {
    const s = Buffer.from('SYSTEM~1EFI', 'latin1');
    const sum = shortNameChecksum(s);
    // The specification's rotate-right-and-add, spelled out independently.
    let expected = 0;
    for (const b of s) expected = (((expected >> 1) | ((expected & 1) << 7)) + b) & 0xff;
    expect(sum).toBe(expected);
    const entries = encodeLongEntries('systemd-bootx64.efi', s);
    expect(entries.map((e) => e[0])).toEqual([0x42, 0x01]);
    for (const e of entries) expect([e[11], e[12], e[13], e.readUInt16LE(26)]).toEqual([0x0f, 0, sum, 0]);
    const units = (e: Buffer) => [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30].map((o) => e.readUInt16LE(o));
    expect(String.fromCharCode(...units(entries[1]!), ...units(entries[0]!).slice(0, 6))).toBe('systemd-bootx64.efi');
    expect(units(entries[0]!).slice(6)).toEqual([0, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff]);
    // Characters outside the BMP take two units (a surrogate pair), as Windows and Linux store them.
    expect(units(encodeLongEntries('😀', s)[0]!).slice(0, 3)).toEqual([0xd83d, 0xde00, 0]);
  });
});

describe('timestamps', () => {
  it('encodes the epoch as UTC calendar time with the odd second in the creation centiseconds', () => {
    // 2023-11-14 22:13:21 UTC
    expect(fatTime(1700000001)).toEqual({
      date: (43 << 9) | (11 << 5) | 14,
      time: (22 << 11) | (13 << 5) | 10,
      centis: 100,
    });
    expect(fatTime(1700000000).centis).toBe(0);
  });
  it('clamps to what FAT can hold: 1980-01-01 and 2107-12-31 23:59:58', () => {
    expect(fatTime(0)).toEqual({ date: (0 << 9) | (1 << 5) | 1, time: 0, centis: 0 });
    expect(fatTime(-1e12)).toEqual(fatTime(0));
    expect(fatTime(1e12)).toEqual({
      date: (127 << 9) | (12 << 5) | 31,
      time: (23 << 11) | (59 << 5) | 29,
      centis: 100,
    });
  });
});

describe('geometry', () => {
  it('matches mkfs.fat -F 32 -S 512 -s 1 for 64 and 256 MiB ESPs', () => {
    expect(fat32Geometry(64 * MiB)).toEqual({
      totalSectors: 131072,
      sectorsPerCluster: 1,
      clusterBytes: 512,
      fatSectors: 1009,
      clusterCount: 129022,
      dataSector: 2050,
      sectorsPerTrack: 32,
      heads: 8,
    });
    expect(fat32Geometry(256 * MiB)).toEqual({
      totalSectors: 524288,
      sectorsPerCluster: 1,
      clusterBytes: 512,
      fatSectors: 4033,
      clusterCount: 516190,
      dataSector: 8098,
      sectorsPerTrack: 32,
      heads: 16,
    });
  });
  it('switches to 4 KiB clusters above 260 MiB and refuses sizes with too few clusters for FAT32', () => {
    expect(fat32Geometry(512 * MiB)).toMatchObject({
      sectorsPerCluster: 8,
      totalSectors: 1048572,
      fatSectors: 1024,
      sectorsPerTrack: 63,
      heads: 32,
    });
    expect(fat32Geometry(32 * MiB)).toBeUndefined();
    expect(fat32Geometry(33 * MiB)).toBeDefined();
  });
});

function caught(f: () => unknown): Img2vmError {
  try {
    f();
  } catch (e) {
    if (e instanceof Img2vmError) return e;
    throw e;
  }
  throw new Error('expected an Img2vmError');
}

describe('errors', () => {
  it('says how big the ESP must be when the files do not fit, and that size fits', () => {
    const big = { size: 70 * 1000 * 1000, async *read() {} };
    const e = caught(() => planFat32(OPTS, [{ path: 'initrd.img', content: big }]));
    expect(e.kind).toBe('sizeTooSmall');
    expect(e.message).toMatch(/64M is too small: its 1 files need 68M$/);
    expect(e.hint).toMatch(/68M or larger/);
    expect(() => planFat32({ ...OPTS, size: 68 * MiB }, [{ path: 'initrd.img', content: big }])).not.toThrow();
    expect(() => planFat32({ ...OPTS, size: 67 * MiB }, [{ path: 'initrd.img', content: big }])).toThrow(Img2vmError);
    expect(caught(() => planFat32({ ...OPTS, size: 16 * MiB }, [])).message).toMatch(/FAT32 needs at least 33M/);
  });

  it('rejects names FAT cannot hold, as badImage naming the path', () => {
    for (const bad of [
      'EFI/a:b.conf',
      'x*',
      'what?',
      'a"b',
      'a<b',
      'a>b',
      'a|b',
      'a\\b',
      'dots.',
      'a/ b',
      'a//b',
      'ctl\x01',
      'x'.repeat(256),
    ]) {
      const e = caught(() => planFat32(OPTS, [{ path: bad, content: text('') }]));
      expect(e.kind, bad).toBe('badImage');
      expect(e.message).toContain(JSON.stringify(bad));
    }
  });

  it('rejects two names that differ only in case, and a file where a directory must be', () => {
    expect(
      caught(() =>
        planFat32(OPTS, [
          { path: 'a/x.conf', content: text('') },
          { path: 'A/X.CONF', content: text('') },
        ]),
      ).message,
    ).toMatch(/FAT ignores case/);
    expect(
      caught(() =>
        planFat32(OPTS, [
          { path: 'EFI', content: text('') },
          { path: 'EFI/BOOT/BOOTX64.EFI', content: text('') },
        ]),
      ).message,
    ).toMatch(/is a file/);
  });

  it('merges directories spelled in different cases into one, whose name does not depend on the input order', async () => {
    const files = [
      { path: 'efi/boot/a.efi', content: text('a') },
      { path: 'EFI/BOOT/B.EFI', content: text('b') },
    ];
    const layout = planFat32(OPTS, files);
    expect(layout.dirs.map((d) => d.path)).toEqual(['', 'EFI', 'EFI/BOOT']);
    const a = new MemoryTarget();
    const b = new MemoryTarget();
    await writeFat32(a, OPTS, files);
    await writeFat32(b, OPTS, [...files].reverse());
    expect(a.sha256(OPTS.offset, OPTS.size)).toBe(b.sha256(OPTS.offset, OPTS.size));
  });

  it('rejects a label that is not upper-case 8.3 characters', () => {
    expect(caught(() => planFat32({ ...OPTS, label: 'efi' }, [])).kind).toBe('usage');
    expect(caught(() => planFat32({ ...OPTS, label: 'TWELVE CHARS' }, [])).kind).toBe('usage');
  });

  it('refuses a target smaller than the end of the file system (a planning bug, not a user error)', async () => {
    const t = new MemoryTarget();
    t.resize(OPTS.offset + OPTS.size - 512);
    await expect(writeFat32(t, OPTS, SMALL)).rejects.toThrow(RangeError);
    expect(t.writes).toEqual([]);
  });

  it('fails, without writing past the file, when a stream yields another size than it declared', async () => {
    const longer = {
      size: 10,
      async *read() {
        yield new Uint8Array(8);
        yield new Uint8Array(8);
      },
    };
    const t = new MemoryTarget();
    await expect(writeFat32(t, OPTS, [{ path: 'a', content: longer }])).rejects.toMatchObject({ kind: 'badImage' });
    const layout = planFat32(OPTS, [{ path: 'a', content: longer }]);
    const end = OPTS.offset + (layout.geometry.dataSector + layout.used) * 512;
    expect(t.writes.every((w) => w.offset + w.length <= end)).toBe(true);
    const shorter = {
      size: 10,
      async *read() {
        yield new Uint8Array(8);
      },
    };
    await expect(writeFat32(new MemoryTarget(), OPTS, [{ path: 'a', content: shorter }])).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/gave 8 bytes/),
    });
  });
});

describe('writeFat32', () => {
  it('writes the reserved sectors, both FATs, directory clusters and file bytes, in disk order, and nothing else', async () => {
    const t = new MemoryTarget();
    await writeFat32(t, OPTS, SMALL);
    const layout = planFat32(OPTS, SMALL);
    const g = layout.geometry;
    const dirBytes = layout.dirs.reduce((n, d) => n + d.clusters * 512, 0);
    const fileBytes = layout.files.reduce((n, f) => n + f.size, 0);
    expect(t.writes.reduce((n, w) => n + w.length, 0)).toBe(32 * 512 + 2 * g.fatSectors * 512 + dirBytes + fileBytes);
    for (let i = 1; i < t.writes.length; i++)
      expect(t.writes[i]!.offset).toBeGreaterThanOrEqual(t.writes[i - 1]!.offset + t.writes[i - 1]!.length);
    expect(t.writes[0]!.offset).toBe(OPTS.offset);
    // Six directories of one cluster each, root first, then the files, each one contiguous run.
    expect(layout.dirs.map((d) => [d.path, d.cluster])).toEqual([
      ['', 2],
      ['EFI', 3],
      ['EFI/BOOT', 4],
      ['EFI/systemd', 5],
      ['loader', 6],
      ['loader/entries', 7],
    ]);
    expect(layout.files.map((f) => [f.path, f.cluster, f.clusters])).toEqual([
      ['vmlinuz-6.1.0-28-cloud-amd64', 8, 385],
      ['EFI/BOOT/BOOTX64.EFI', 393, 1],
      ['EFI/systemd/systemd-bootx64.efi', 394, 1],
      ['loader/loader.conf', 395, 1],
      ['loader/entries/img2vm-6.1.0-28-cloud-amd64.conf', 396, 1],
    ]);
  });

  it('gives FSInfo the true free count and the first free cluster, and chains each run in order', async () => {
    const t = new MemoryTarget();
    await writeFat32(t, OPTS, SMALL);
    const info = Buffer.alloc(512);
    t.read(info, OPTS.offset + 512);
    expect([info.readUInt32LE(488), info.readUInt32LE(492)]).toEqual([129022 - 395, 2 + 395]);
    const fat = Buffer.alloc(400 * 4);
    t.read(fat, OPTS.offset + 32 * 512);
    const next = (c: number) => fat.readUInt32LE(c * 4);
    expect([
      next(0),
      next(1),
      next(2),
      next(7),
      next(8),
      next(391),
      next(392),
      next(393),
      next(396),
      next(397),
    ]).toEqual([0x0ffffff8, 0x0fffffff, 0x0fffffff, 0x0fffffff, 9, 392, 0x0fffffff, 0x0fffffff, 0x0fffffff, 0]);
    const copy = Buffer.alloc(fat.length);
    t.read(copy, OPTS.offset + (32 + 1009) * 512);
    expect(copy.equals(fat)).toBe(true);
  });

  it('gives the same bytes for the same files in any order (golden digest of the small ESP)', async () => {
    const a = new MemoryTarget();
    const b = new MemoryTarget();
    await writeFat32(a, OPTS, SMALL);
    await writeFat32(b, OPTS, [...SMALL].reverse());
    const digest = a.sha256(OPTS.offset, OPTS.size);
    expect(b.sha256(OPTS.offset, OPTS.size)).toBe(digest);
    expect(digest).toBe(GOLDEN_SMALL);
  });
});
