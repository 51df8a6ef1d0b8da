// Unit tests for disk layout planning: offsets, alignment and sizes per boot mode, --size handling, reproducibility.
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { createRandom } from '../../src/core/random.js';
import { formatSize, GiB, MiB } from '../../src/core/units.js';
import {
  DEFAULT_ESP_SIZE,
  GPT_TYPE,
  partitionByRole,
  planLayout,
  type BootMode,
  type DiskLayout,
  type LayoutInput,
  type PartitionTableKind,
} from '../../src/disk/layout.js';

const plan = (over: Partial<LayoutInput> & Pick<LayoutInput, 'boot'>): DiskLayout =>
  planLayout({ rootSize: 1000 * MiB, random: createRandom('layout'), ...over });

const summary = (l: DiskLayout) => l.partitions.map((p) => [p.index, p.role, p.start / MiB, p.size / MiB]);

/** Invariants every layout must keep, whatever the inputs. */
function checkInvariants(l: DiskLayout): void {
  expect(l.sectorSize).toBe(512);
  expect(l.diskSize % 512).toBe(0);
  let next = MiB;
  l.partitions.forEach((p, i) => {
    expect(p.index).toBe(i + 1);
    expect(p.start % MiB).toBe(0);
    expect(p.size % MiB).toBe(0);
    expect(p.size).toBeGreaterThan(0);
    expect(p.start).toBe(next);
    next = p.start + p.size;
    expect(p.guid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    if (l.table === 'gpt') expect(p.bootable).toBe(false);
  });
  // GPT keeps its 33 backup sectors free; MBR may use the disk to the end.
  const tail = l.table === 'gpt' ? 33 * 512 : 0;
  expect(next).toBeLessThanOrEqual(l.diskSize - tail);
  expect(l.diskSize - tail - next).toBeLessThan(MiB);
  expect(l.partitions.at(-1)!.role).toBe('root');
  expect(Number.isInteger(l.mbrSignature) && l.mbrSignature > 0 && l.mbrSignature <= 0xffffffff).toBe(true);
  expect(l.diskGuid).toMatch(/^[0-9a-f-]{36}$/);
}

describe('planLayout: each boot mode, fitted to the content', () => {
  it('bios → MBR with one bootable Linux root at 1 MiB, disk = 1 MiB + root', () => {
    const l = plan({ boot: 'bios' });
    checkInvariants(l);
    expect(l.table).toBe('mbr');
    expect(summary(l)).toEqual([[1, 'root', 1, 1000]]);
    expect(l.diskSize).toBe(1001 * MiB);
    expect(l.partitions[0]).toMatchObject({
      mbrType: 0x83,
      bootable: true,
      gptType: GPT_TYPE.rootX86_64,
      name: 'root',
    });
  });

  it('bios with a separate /boot → /boot first and flagged active, root after it', () => {
    const l = plan({ boot: 'bios', bootPartitionSize: 256 * MiB });
    checkInvariants(l);
    expect(summary(l)).toEqual([
      [1, 'boot', 1, 256],
      [2, 'root', 257, 1000],
    ]);
    expect(l.partitions.map((p) => [p.mbrType, p.bootable])).toEqual([
      [0x83, true],
      [0x83, false],
    ]);
    expect(l.diskSize).toBe(1257 * MiB);
  });

  it('bios on GPT → a 1 MiB BIOS boot partition first, and a 1 MiB tail for the backup table', () => {
    const l = plan({ boot: 'bios', table: 'gpt' });
    checkInvariants(l);
    expect(summary(l)).toEqual([
      [1, 'bios-boot', 1, 1],
      [2, 'root', 2, 1000],
    ]);
    expect(l.partitions[0]).toMatchObject({ name: 'BIOS boot', gptType: '21686148-6449-6E6F-744E-656564454649' });
    expect(l.diskSize).toBe(1003 * MiB);
  });

  it('uefi → GPT with a 64 MiB ESP and root', () => {
    const l = plan({ boot: 'uefi' });
    checkInvariants(l);
    expect(l.table).toBe('gpt');
    expect(DEFAULT_ESP_SIZE).toBe(64 * MiB);
    expect(summary(l)).toEqual([
      [1, 'esp', 1, 64],
      [2, 'root', 65, 1000],
    ]);
    expect(l.partitions[0]).toMatchObject({
      name: 'EFI System',
      gptType: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
      mbrType: 0xef,
    });
    expect(l.partitions[1]).toMatchObject({ name: 'root', gptType: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709' });
    expect(l.diskSize).toBe(1066 * MiB);
  });

  it('hybrid → GPT with BIOS boot, ESP, (boot,) root', () => {
    expect(summary(plan({ boot: 'hybrid' }))).toEqual([
      [1, 'bios-boot', 1, 1],
      [2, 'esp', 2, 64],
      [3, 'root', 66, 1000],
    ]);
    const l = plan({ boot: 'hybrid', bootPartitionSize: 300 * MiB });
    checkInvariants(l);
    expect(summary(l)).toEqual([
      [1, 'bios-boot', 1, 1],
      [2, 'esp', 2, 64],
      [3, 'boot', 66, 300],
      [4, 'root', 366, 1000],
    ]);
    expect(l.partitions.map((p) => p.name)).toEqual(['BIOS boot', 'EFI System', 'boot', 'root']);
    expect(partitionByRole(l, 'boot')!.gptType).toBe('0FC63DAF-8483-4772-8E79-3D69D8477DE4');
    expect(l.diskSize).toBe(1367 * MiB);
  });

  it('uefi or hybrid on MBR → ESP 0xEF, no BIOS boot partition; active flag only when BIOS boots', () => {
    const u = plan({ boot: 'uefi', table: 'mbr' });
    checkInvariants(u);
    expect(u.partitions.map((p) => [p.role, p.mbrType, p.bootable])).toEqual([
      ['esp', 0xef, false],
      ['root', 0x83, false],
    ]);
    expect(u.diskSize).toBe(1065 * MiB);
    const h = plan({ boot: 'hybrid', table: 'mbr', bootPartitionSize: 100 * MiB });
    checkInvariants(h);
    expect(h.partitions.map((p) => [p.role, p.mbrType, p.bootable])).toEqual([
      ['esp', 0xef, false],
      ['boot', 0x83, true],
      ['root', 0x83, false],
    ]);
  });

  it('rounds every partition up to whole MiB', () => {
    const l = plan({ boot: 'hybrid', rootSize: 1000 * MiB + 1, espSize: 10 * MiB + 7, bootPartitionSize: 1 });
    checkInvariants(l);
    expect(summary(l)).toEqual([
      [1, 'bios-boot', 1, 1],
      [2, 'esp', 2, 11],
      [3, 'boot', 13, 1],
      [4, 'root', 14, 1001],
    ]);
    expect(l.diskSize).toBe(1016 * MiB);
  });

  it('keeps the invariants across modes, tables and odd sizes', () => {
    const random = createRandom('sweep');
    for (const boot of ['bios', 'uefi', 'hybrid'] as BootMode[]) {
      for (const table of [undefined, 'mbr', 'gpt'] as Array<PartitionTableKind | undefined>) {
        for (const rootSize of [1, MiB - 1, MiB, 777 * MiB + 3]) {
          for (const extra of [undefined, 0, 5 * MiB + 1, 3 * GiB + 12_345]) {
            const fitted = planLayout({
              boot,
              table,
              rootSize,
              bootPartitionSize: extra === 0 ? 1 : undefined,
              random,
            });
            checkInvariants(fitted);
            if (extra === undefined || extra === 0) continue;
            const l = planLayout({ boot, table, rootSize, diskSize: fitted.diskSize + extra, random });
            checkInvariants(l);
            expect(partitionByRole(l, 'root')!.size).toBeGreaterThanOrEqual(rootSize);
          }
        }
      }
    }
  });
});

describe('planLayout: explicit --size', () => {
  it('gives root all the remaining space (GPT: up to the 1 MiB tail)', () => {
    const l = plan({ boot: 'uefi', diskSize: 4 * GiB });
    checkInvariants(l);
    expect(l.diskSize).toBe(4 * GiB);
    const root = partitionByRole(l, 'root')!;
    expect(root.start).toBe(65 * MiB);
    expect(root.start + root.size).toBe(4 * GiB - MiB);
  });

  it('gives root all the space to the end of an MBR disk', () => {
    const l = plan({ boot: 'bios', diskSize: 4 * GiB });
    const root = partitionByRole(l, 'root')!;
    expect([root.start, root.start + root.size]).toEqual([MiB, 4 * GiB]);
  });

  it('rounds a size that is not whole sectors up, and ends root on a MiB boundary before the backup GPT', () => {
    const l = plan({ boot: 'hybrid', diskSize: 2 * GiB + 1000 });
    checkInvariants(l);
    expect(l.diskSize).toBe(2 * GiB + 1024);
    const root = partitionByRole(l, 'root')!;
    // 2 GiB + 1024 - 33 sectors is just under 2 GiB, so root ends 1 MiB earlier.
    expect(root.start + root.size).toBe(2 * GiB - MiB);
  });

  it('accepts exactly the fitted size', () => {
    const fitted = plan({ boot: 'hybrid', bootPartitionSize: 128 * MiB });
    const l = plan({ boot: 'hybrid', bootPartitionSize: 128 * MiB, diskSize: fitted.diskSize });
    expect(l).toEqual(fitted);
  });

  it('refuses a size that is too small, naming the size it needs', () => {
    for (const [boot, needed] of [
      ['bios', 1001 * MiB],
      ['uefi', 1066 * MiB],
      ['hybrid', 1067 * MiB],
    ] as Array<[BootMode, number]>) {
      const attempt = () => plan({ boot, diskSize: needed - 512 });
      expect(attempt).toThrow(Img2vmError);
      try {
        attempt();
      } catch (e) {
        const err = e as Img2vmError;
        expect(err.kind).toBe('sizeTooSmall');
        expect(err.exitCode).toBe(8);
        expect(err.message).toBe(
          `--size ${formatSize(needed - 512)} is too small: the image needs at least ${formatSize(needed)}`,
        );
        expect(err.hint).toContain(formatSize(needed));
      }
    }
    expect(() => plan({ boot: 'uefi', diskSize: 512 * MiB })).toThrow(
      '--size 512M is too small: the image needs at least 1.04G',
    );
  });

  it('refuses an MBR larger than 32-bit sector numbers can describe', () => {
    expect(() => plan({ boot: 'bios', diskSize: 3 * 1024 * GiB })).toThrow(
      /MBR partition table cannot describe a 3072G disk/,
    );
    const l = plan({ boot: 'bios', diskSize: 2 * 1024 * GiB - 512 });
    expect(partitionByRole(l, 'root')!.size).toBe(2 * 1024 * GiB - 2 * MiB);
    expect(() => plan({ boot: 'uefi', diskSize: 3 * 1024 * GiB })).not.toThrow();
  });

  it('treats nonsense sizes from the program as bugs', () => {
    expect(() => plan({ boot: 'bios', rootSize: 0 })).toThrow(RangeError);
    expect(() => plan({ boot: 'bios', espSize: -1 })).toThrow(RangeError);
    expect(() => plan({ boot: 'bios', diskSize: 1.5 })).toThrow(RangeError);
  });
});

describe('planLayout: identifiers', () => {
  it('draws GUIDs and the signature from the given random source: same seed, same layout', () => {
    const a = planLayout({ boot: 'hybrid', rootSize: GiB, random: createRandom('s1') });
    const b = planLayout({ boot: 'hybrid', rootSize: GiB, random: createRandom('s1') });
    const c = planLayout({ boot: 'hybrid', rootSize: GiB, random: createRandom('s2') });
    expect(a).toEqual(b);
    expect(c.diskGuid).not.toBe(a.diskGuid);
    expect(c.partitions.map((p) => p.guid)).not.toEqual(a.partitions.map((p) => p.guid));
    const ids = [a.diskGuid, ...a.partitions.map((p) => p.guid)];
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('pins the seeded values, so a change in draw order shows up here first', () => {
    const l = planLayout({ boot: 'uefi', rootSize: GiB, random: createRandom('golden') });
    expect([l.diskGuid, l.mbrSignature.toString(16), ...l.partitions.map((p) => p.guid)]).toEqual([
      'b30afe62-690b-42ed-909d-a5a798b53b69',
      '7ca2966',
      '6ef6ddcc-0241-4909-bd89-57e1dd0861ec',
      'b8f164e3-141d-40e1-a458-a0843bef193c',
    ]);
  });

  it('never uses a zero MBR signature', () => {
    let calls = 0;
    const zeroFirst = createRandom('z');
    const random = {
      ...zeroFirst,
      bytes: (n: number) => (n === 4 && calls++ === 0 ? Buffer.alloc(4) : zeroFirst.bytes(n)),
    };
    expect(planLayout({ boot: 'bios', rootSize: MiB, random }).mbrSignature).not.toBe(0);
  });

  it('partitionByRole finds a role or returns undefined', () => {
    const l = plan({ boot: 'uefi' });
    expect(partitionByRole(l, 'esp')!.index).toBe(1);
    expect(partitionByRole(l, 'bios-boot')).toBeUndefined();
  });
});
