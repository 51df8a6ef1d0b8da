// Tools tier: the tables we write, read back by util-linux sfdisk from sparse images, including the backup GPT.
import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GiB } from '../../src/core/units.js';
import type { DiskLayout } from '../../src/disk/layout.js';
import { partitionTableBytes } from '../../src/disk/table.js';
import { writePartitionTable } from './table-file.js';
import { CASES, caseLayout, DISK_SIZE, readAt } from './cases.js';

const hasSfdisk = spawnSync('sfdisk', ['--version']).status === 0;
const GOLDEN_DIR = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');

function sfdisk(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sfdisk', args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface SfdiskPartition {
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
  bootable?: boolean;
}
interface SfdiskTable {
  label: string;
  id: string;
  firstlba?: number;
  lastlba?: number;
  sectorsize: number;
  partitions: SfdiskPartition[];
}

function readTable(image: string): { table: SfdiskTable; stderr: string } {
  const r = sfdisk('--json', image);
  expect(r.status, r.stderr).toBe(0);
  return { table: (JSON.parse(r.stdout) as { partitiontable: SfdiskTable }).partitiontable, stderr: r.stderr };
}

/** What sfdisk should report for a layout, in sfdisk's own spelling. */
function expected(l: DiskLayout): Partial<SfdiskTable> {
  const sectors = (n: number) => n / 512;
  if (l.table === 'mbr') {
    return {
      label: 'dos',
      id: `0x${l.mbrSignature.toString(16).padStart(8, '0')}`,
      sectorsize: 512,
      partitions: l.partitions.map((p) => ({
        start: sectors(p.start),
        size: sectors(p.size),
        type: p.mbrType.toString(16),
        ...(p.bootable ? { bootable: true } : {}),
      })),
    };
  }
  return {
    label: 'gpt',
    id: l.diskGuid.toUpperCase(),
    firstlba: 34,
    lastlba: sectors(l.diskSize) - 34,
    sectorsize: 512,
    partitions: l.partitions.map((p) => ({
      start: sectors(p.start),
      size: sectors(p.size),
      type: p.gptType,
      uuid: p.guid.toUpperCase(),
      name: p.name,
    })),
  };
}

/** Header fields must match; partitions exactly, so an unexpected flag or attribute fails too. */
function expectTable(t: SfdiskTable, l: DiskLayout): void {
  const want = expected(l);
  const partitions = t.partitions.map(({ node: _node, ...rest }: SfdiskPartition & { node?: string }) => rest);
  expect(partitions).toEqual(want.partitions);
  expect(t).toMatchObject({ ...want, partitions: expect.anything() });
}

function expectVerifiedClean(image: string): void {
  const r = sfdisk('--verify', image);
  expect(r.status, r.stdout + r.stderr).toBe(0);
  expect(r.stdout).toContain('No errors detected');
  // sfdisk reports a damaged backup GPT only on stderr and still exits 0.
  expect(r.stderr).toBe('');
}

async function sparseImage(path: string, size: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

async function writeTable(path: string, l: DiskLayout): Promise<void> {
  await sparseImage(path, l.diskSize);
  const fh = await open(path, 'r+');
  try {
    await writePartitionTable(fh.fd, l);
  } finally {
    await fh.close();
  }
}

describe('sfdisk reads back what we write', () => {
  let dir: string;
  beforeAll(async () => {
    if (!hasSfdisk) throw new Error('sfdisk is missing: install fdisk (scripts/install-deps.sh)');
    dir = await mkdtemp(join(tmpdir(), 'img2vm-sfdisk-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    describe(c.name, () => {
      const l = caseLayout(c);
      let image: string;

      beforeAll(async () => {
        image = join(dir, `${c.name}.img`);
        await writeTable(image, l);
      });

      it('sfdisk --json shows the planned partitions, types, GUIDs, names and label id', () => {
        const { table, stderr } = readTable(image);
        expect(stderr).toBe('');
        expectTable(table, l);
      });

      it('sfdisk --verify finds nothing wrong', () => {
        expectVerifiedClean(image);
      });

      if (l.table === 'gpt')
        it('the backup GPT alone gives the same table', async () => {
          const damaged = join(dir, `${c.name}-noprimary.img`);
          await writeTable(damaged, l);
          const fh = await open(damaged, 'r+');
          try {
            await fh.write(Buffer.alloc(33 * 512), 0, 33 * 512, 512);
          } finally {
            await fh.close();
          }
          const { table, stderr } = readTable(damaged);
          expect(stderr).toMatch(/primary GPT table is corrupt, but the backup appears OK/);
          expectTable(table, l);
          await rm(damaged);
        });

      it('sfdisk writing the same table produces the same bytes', async () => {
        const dump = sfdisk('--dump', image);
        expect(dump.status, dump.stderr).toBe(0);
        const theirs = join(dir, `${c.name}-sfdisk.img`);
        await sparseImage(theirs, l.diskSize);
        const w = spawnSync('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', theirs], {
          input: dump.stdout,
          encoding: 'utf8',
          env: { ...process.env, LC_ALL: 'C' },
        });
        expect(w.status, w.stderr).toBe(0);
        for (const chunk of partitionTableBytes(l)) {
          const got = await readAt(theirs, chunk.offset, chunk.bytes.length);
          const ours = Buffer.from(chunk.bytes);
          if (l.table === 'gpt' && chunk.offset === 0) {
            // The one deliberate difference: sfdisk always writes 0xFFFFFF as the protective entry's end CHS;
            // we write the last sector's CHS when it fits, as the UEFI specification says.
            expect([...got.subarray(0x1c3, 0x1c6)]).toEqual([0xff, 0xff, 0xff]);
            got.fill(0, 0x1c3, 0x1c6);
            ours.fill(0, 0x1c3, 0x1c6);
          }
          expect(got.equals(ours), `${c.name}: bytes at ${chunk.offset} differ from sfdisk's`).toBe(true);
        }
        await rm(theirs);
      });
    });
  }

  it('the committed golden files are tables sfdisk accepts', async () => {
    for (const c of CASES) {
      const l = caseLayout(c);
      const image = join(dir, `${c.name}-golden.img`);
      await sparseImage(image, DISK_SIZE);
      const fh = await open(image, 'r+');
      try {
        for (const f of (await readdir(GOLDEN_DIR)).filter((n) => n.startsWith(`${c.name}.`))) {
          const bytes = await readFile(join(GOLDEN_DIR, f));
          await fh.write(bytes, 0, bytes.length, Number(f.split('.')[1]));
        }
      } finally {
        await fh.close();
      }
      expectTable(readTable(image).table, l);
      expectVerifiedClean(image);
      await rm(image);
    }
  });

  it('beyond the CHS range (20 GiB MBR, 3 TiB GPT) the tables still verify', async () => {
    const big = [
      caseLayout(
        CASES.find((c) => c.name === 'bios-mbr')!,
        20 * GiB,
      ),
      caseLayout(
        CASES.find((c) => c.name === 'hybrid-gpt')!,
        3 * 1024 * GiB,
      ),
    ];
    for (const l of big) {
      const image = join(dir, `big-${l.table}.img`);
      await writeTable(image, l);
      expectTable(readTable(image).table, l);
      expectVerifiedClean(image);
      await rm(image);
    }
  });
});
