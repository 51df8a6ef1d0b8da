// The FAT32 writer read back by real tools: fsck.fat, mtools, blkid, mkfs.fat's geometry, qemu-img; randomised trees.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MiB } from '../../src/core/units.js';
import { writeFat32, type Fat32Content, type Fat32File, type Fat32Options } from '../../src/disk/fat32.js';
import { bootSector } from '../../src/disk/fat32/boot.js';
import { fat32Geometry } from '../../src/disk/fat32/geometry.js';
import { RawFileTarget, type BlockTarget } from '../../src/disk/target.js';
import { Qcow2Target } from '../../src/disk/qcow2/target.js';
import { GOLDEN_SMALL, OPTS, SMALL } from './fat32-cases.js';

const tmp = mkdtempSync(join(tmpdir(), 'img2vm-fat32-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let serial = 0;

/** Runs a host tool, failing the test with its output when it is missing or fails. */
function tool(cmd: string, args: string[], env: Record<string, string> = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}); scripts/install-deps.sh installs it`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}
const MTOOLS = { MTOOLS_SKIP_CHECK: '1', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', TZ: 'UTC' };
const GUARD = 4096;

/** Writes an ESP into a fresh sparse raw disk with guard bytes on both sides of it; returns the disk's path. */
async function espDisk(opts: Fat32Options, files: Fat32File[]): Promise<string> {
  const path = join(tmp, `disk${serial++}.raw`);
  const t = new RawFileTarget(path);
  t.resize(opts.offset + opts.size + MiB);
  t.write(Buffer.alloc(GUARD, 0xa5), opts.offset - GUARD);
  t.write(Buffer.alloc(GUARD, 0x5a), opts.offset + opts.size);
  const t0 = performance.now();
  await writeFat32(t, opts, files);
  console.log(
    `writeFat32 ${opts.size / MiB} MiB, ${files.length} files: ${((performance.now() - t0) / 1000).toFixed(2)} s`,
  );
  t.close();
  const guard = (at: number, fill: number) => {
    const b = Buffer.alloc(GUARD);
    const fd = new RawFileTarget(path, { create: false });
    fd.read(b, at);
    fd.close();
    expect(b.equals(Buffer.alloc(GUARD, fill)), `bytes at ${at} were overwritten`).toBe(true);
  };
  guard(opts.offset - GUARD, 0xa5);
  guard(opts.offset + opts.size, 0x5a);
  return path;
}

/** fsck.fat -n on a sparse copy of the partition (dosfstools 4.2 has no offset option): no finding at all. */
function fsck(disk: string, opts: Fat32Options): void {
  const part = `${disk}.part`;
  tool('dd', [
    `if=${disk}`,
    `of=${part}`,
    'bs=1M',
    `skip=${opts.offset}`,
    `count=${opts.size}`,
    'iflag=skip_bytes,count_bytes',
    'conv=sparse',
    'status=none',
  ]);
  const out = tool('fsck.fat', ['-n', part]).trim().split('\n');
  rmSync(part);
  // A clean check prints the version, then only the summary line.
  expect(out.slice(1, -1)).toEqual([]);
  expect(out.at(-1)).toMatch(/: \d+ files, \d+\/\d+ clusters$/);
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

async function contentOf(c: Fat32Content): Promise<Buffer> {
  if (c instanceof Uint8Array) return Buffer.from(c);
  const parts: Uint8Array[] = [];
  for await (const p of c.read()) parts.push(p);
  return Buffer.concat(parts);
}

/** mcopy -s of the whole volume into a directory: every path with its digest, and every mtime. */
function readBack(disk: string, opts: Fat32Options): { files: Map<string, string>; mtimes: Set<number> } {
  const dest = mkdtempSync(join(tmp, 'out-'));
  tool('mcopy', ['-s', '-n', '-m', '-i', `${disk}@@${opts.offset}`, '::/*', dest], MTOOLS);
  const files = new Map<string, string>();
  const mtimes = new Set<number>();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dest, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = statSync(join(dest, r));
      if (st.isDirectory()) walk(r);
      else {
        files.set(r, sha(readFileSync(join(dest, r))));
        mtimes.add(Math.floor(st.mtimeMs / 1000));
      }
    }
  };
  walk('');
  rmSync(dest, { recursive: true });
  return { files, mtimes };
}

async function expectReadsBack(disk: string, opts: Fat32Options, files: Fat32File[]): Promise<void> {
  const want = new Map<string, string>();
  for (const f of files) want.set(f.path, sha(await contentOf(f.content)));
  const got = readBack(disk, opts);
  expect(new Map([...got.files].sort())).toEqual(new Map([...want].sort()));
  // mtools -m gives files FAT's write time (local time, read under TZ=UTC): the epoch, to 2 seconds.
  expect([...got.mtimes]).toEqual([opts.epoch - (opts.epoch % 2)]);
}

function diskSha(path: string, offset: number, length: number): string {
  const t = new RawFileTarget(path, { create: false });
  const h = createHash('sha256');
  const b = Buffer.alloc(MiB);
  for (let at = 0; at < length; at += MiB) {
    const n = t.read(b.subarray(0, Math.min(MiB, length - at)), offset + at);
    h.update(b.subarray(0, n));
  }
  t.close();
  return h.digest('hex');
}

describe('the small ESP, read back by tools', () => {
  it('is clean to fsck.fat, has the golden digest, and blkid sees the volume id and label at the offset', async () => {
    const disk = await espDisk(OPTS, SMALL);
    fsck(disk, OPTS);
    expect(diskSha(disk, OPTS.offset, OPTS.size)).toBe(GOLDEN_SMALL);
    const probe = tool('blkid', ['-p', '-O', String(OPTS.offset), '-o', 'export', disk]);
    expect(probe).toMatch(/^UUID=C0FF-EE42$/m);
    expect(probe).toMatch(/^LABEL=EFI$/m);
    expect(probe).toMatch(/^TYPE=vfat$/m);
    expect(probe).toMatch(/^VERSION=FAT32$/m);
    // Sparse: the FATs (2 × 505 KiB) and the data, not the 64 MiB.
    expect(statSync(disk).blocks * 512).toBeLessThan(2 * MiB);
  });

  it('gives every file back byte for byte through mcopy, under its long name, and mdir lists long and short names', async () => {
    const disk = await espDisk(OPTS, SMALL);
    await expectReadsBack(disk, OPTS, SMALL);
    const listing = tool('mdir', ['-/', '-i', `${disk}@@${OPTS.offset}`, '::'], MTOOLS);
    expect(listing).toMatch(/Volume in drive : is EFI/);
    expect(listing).toMatch(/Volume Serial Number is C0FF-EE42/);
    expect(listing).toMatch(/SYSTEM~1 EFI +10 2023-11-14 +22:13 +systemd-bootx64\.efi/);
    expect(listing).toMatch(/^loader +<DIR>/m); // lower case from the NT flags, no long entry
    expect(listing).toMatch(/IMG2VM~1 CON .* img2vm-6\.1\.0-28-cloud-amd64\.conf/);
  });

  it('writes the same bytes through Qcow2Target as through a raw file', async () => {
    const path = join(tmp, 'esp.qcow2');
    const t: BlockTarget = new Qcow2Target(path, { size: OPTS.offset + OPTS.size + MiB });
    await writeFat32(t, OPTS, SMALL);
    t.close();
    const raw = join(tmp, 'from-qcow2.raw');
    tool('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, raw]);
    expect(diskSha(raw, OPTS.offset, OPTS.size)).toBe(GOLDEN_SMALL);
    rmSync(raw);
    rmSync(path);
  });
});

describe('geometry against mkfs.fat', () => {
  // mkfs.fat -s 1 is today's path for ESPs up to 260 MiB; above, img2vm picks the cluster size mkfs.fat picks itself.
  const cases: [number, string[]][] = [
    [64, ['-s', '1']],
    [100, ['-s', '1']],
    [256, ['-s', '1']],
    [260, ['-s', '1']],
    [261, []],
    [512, []],
  ];
  for (const [mib, extra] of cases) {
    it(`${mib} MiB: the same BPB as mkfs.fat -F 32 ${extra.join(' ')}`, () => {
      const img = join(tmp, `mkfs-${mib}.raw`);
      tool('truncate', ['-s', `${mib}M`, img]);
      tool('mkfs.fat', ['-F', '32', '-S', '512', ...extra, '-n', 'EFI', '--invariant', '-i', 'C0FFEE42', img]);
      const theirs = readFileSync(img).subarray(0, 512);
      rmSync(img);
      const g = fat32Geometry(mib * MiB)!;
      const ours = bootSector({
        geometry: g,
        hiddenSectors: 0,
        volumeId: 0xc0ffee42,
        label: 'EFI',
        freeClusters: 0,
        nextFree: 2,
      });
      // Everything but the OEM name (3-10) and the boot code (90-509).
      expect(ours.subarray(11, 90).toString('hex')).toBe(theirs.subarray(11, 90).toString('hex'));
    });
  }
});

/** Deterministic pseudo-random numbers (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Names of every kind: exact 8.3 in either case, mixed case, long, dotted, punctuation short names lack, non-ASCII. */
function randomName(rnd: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const word = (n: number, alphabet: string) =>
    Array.from({ length: 1 + Math.floor(rnd() * n) }, () => pick([...alphabet])).join('');
  const kinds = [
    () => `${word(8, 'ABCDEFXYZ019_-')}.${word(3, 'EFICONF')}`,
    () => `${word(8, 'abcxyz0189')}.${word(3, 'efi')}`,
    () => word(8, 'ABCxyz'),
    () => `initrd.img-6.${Math.floor(rnd() * 20)}.0-${Math.floor(rnd() * 40)}-cloud-amd64`,
    () => `${word(40, 'abcdefghijklmnopqrstuvwxyzABC-_. +,;=[]0123456789')}x`,
    () => `${word(12, 'éßЖ中ñabc')}.${word(4, 'txtÉ')}`,
    () => `.${word(10, 'hidden')}`,
    () => `systemd-boot-${word(3, '0123456789')}.efi`,
  ];
  return pick(kinds)();
}

function randomTree(seed: number, count: number): Fat32File[] {
  const rnd = prng(seed);
  const files: Fat32File[] = [];
  const taken = new Map<string, 'file' | 'dir'>();
  const dirs: string[] = [''];
  while (files.length < count) {
    const parent = dirs[Math.floor(rnd() * dirs.length)]!;
    const name = randomName(rnd);
    const path = parent ? `${parent}/${name}` : name;
    const key = path.toUpperCase();
    if (taken.has(key) || /^ |[. ]$/.test(name)) continue;
    if (rnd() < 0.15 && parent.split('/').length < 5) {
      taken.set(key, 'dir');
      dirs.push(path);
      continue;
    }
    taken.set(key, 'file');
    const size = rnd() < 0.1 ? Math.floor(rnd() * 300_000) : Math.floor(rnd() * 3000);
    const bytes = Buffer.alloc(size);
    for (let i = 0; i < size; i++) bytes[i] = Math.floor(rnd() * 256);
    // Half of them streamed in uneven chunks.
    const chunk = 1 + Math.floor(rnd() * 70_000);
    const content: Fat32Content =
      rnd() < 0.5
        ? bytes
        : {
            size,
            async *read() {
              for (let i = 0; i < size; i += chunk) yield bytes.subarray(i, i + chunk);
            },
          };
    files.push({ path, content });
  }
  // One directory where the same basis needs tails past ~9, shortening the base.
  for (let i = 0; i < 25; i++) files.push({ path: `tails/systemd-boot-${seed}-${i}.efi`, content: Buffer.from([i]) });
  // Empty directories are not something the writer makes (it makes those on the way to files), so give each a file.
  for (const d of dirs.slice(1))
    if (!files.some((f) => f.path.startsWith(`${d}/`))) files.push({ path: `${d}/KEEP`, content: Buffer.from(d) });
  return files;
}

describe('randomised trees', () => {
  for (const seed of [1, 2]) {
    it(`seed ${seed}: 300 files in nested directories, names needing long entries and ~N tails, read back identical`, async () => {
      const files = randomTree(seed, 300);
      const opts = { ...OPTS, volumeId: 0x12345678 + seed, epoch: 1234567890 + seed };
      const disk = await espDisk(opts, files);
      fsck(disk, opts);
      await expectReadsBack(disk, opts, files);
    });
  }
});

/** A file of n bytes produced in 1 MiB chunks (never whole in memory), and its digest. */
function streamed(n: number, fill: number): { content: Fat32Content; sha: string } {
  const h = createHash('sha256');
  const chunk = (i: number) => Buffer.alloc(Math.min(MiB, n - i), (fill + i / MiB) & 0xff);
  for (let i = 0; i < n; i += MiB) h.update(chunk(i));
  return {
    content: {
      size: n,
      async *read() {
        for (let i = 0; i < n; i += MiB) yield chunk(i);
      },
    },
    sha: h.digest('hex'),
  };
}

describe('ESP sizes', () => {
  for (const mib of [64, 256, 512]) {
    it(`${mib} MiB with a 10 MB kernel and a 30 MB initrd streamed: fsck clean, read back identical`, async () => {
      const opts = { ...OPTS, size: mib * MiB };
      const kernel = streamed(10_000_000, 0x11);
      const initrd = streamed(30_000_000, 0x77);
      const files: Fat32File[] = [
        { path: 'vmlinuz-6.1.0-28-cloud-amd64', content: kernel.content },
        { path: 'initrd.img-6.1.0-28-cloud-amd64', content: initrd.content },
        ...SMALL.slice(0, 4),
      ];
      const disk = await espDisk(opts, files);
      fsck(disk, opts);
      await expectReadsBack(disk, opts, files);
      const probe = execFileSync('blkid', ['-p', '-O', String(opts.offset), '-o', 'export', disk], {
        encoding: 'utf8',
      });
      expect(probe).toMatch(/^VERSION=FAT32$/m);
      rmSync(disk);
    });
  }
});
