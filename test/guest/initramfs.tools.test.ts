// The initramfs writer: golden cpio bytes, GNU cpio reading them back, reproducibility, and the layout img2vm's init expects.
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { img2vmInitramfsEntries, writeInitramfs, type InitramfsEntry } from '../../src/guest/initramfs.js';

const GOLDEN = join(import.meta.dirname, 'golden');
const update = process.env.UPDATE_GOLDEN === '1';
let work: string;
let hostFile: string;
const savedEpoch = process.env.SOURCE_DATE_EPOCH;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'img2vm-cpio-'));
  hostFile = join(work, 'from-host.bin');
  writeFileSync(hostFile, Buffer.from('read from a host path\n'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(() => {
  if (savedEpoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
  else process.env.SOURCE_DATE_EPOCH = savedEpoch;
});

function entries(): InitramfsEntry[] {
  return [
    { type: 'file', path: 'init', mode: 0o755, content: Buffer.from('#!/bin/sh\necho hi\n') },
    { type: 'char', path: '/dev/console', major: 5, minor: 1 },
    { type: 'block', path: 'dev/vda', mode: 0o660, major: 254, minor: 0 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'img2vm/modules/a.ko', content: { path: hostFile } },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'file', path: 'empty', content: Buffer.alloc(0) },
  ];
}

async function cpio(args: string[], input: Buffer, cwd = work) {
  const r = await execa('cpio', args, {
    input,
    cwd,
    reject: false,
    encoding: 'buffer',
    stripFinalNewline: false,
    env: { LC_ALL: 'C', TZ: 'UTC' },
  });
  expect(
    r.exitCode,
    `cpio ${args.join(' ')} failed (is the cpio package installed?): ${Buffer.from(r.stderr).toString()}`,
  ).toBe(0);
  return Buffer.from(r.stdout).toString('utf8');
}

describe('writeInitramfs', () => {
  it('writes the golden bytes', async () => {
    const bytes = await writeInitramfs(entries(), { mtime: 1_700_000_000 });
    const file = join(GOLDEN, 'initramfs.cpio');
    if (update) {
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(file, bytes);
    }
    expect(bytes.equals(readFileSync(file)), 'differs from test/guest/golden/initramfs.cpio').toBe(true);
  });

  it('is read back by GNU cpio: types, modes, owners, sizes, devices, link targets and the fixed time', async () => {
    const bytes = await writeInitramfs(entries(), { mtime: 1_700_000_000 });
    const list = await cpio(['-itv', '--numeric-uid-gid', '--quiet'], bytes);
    const rows = list
      .trim()
      .split('\n')
      .map((l) => l.replace(/\s+/g, ' '));
    expect(rows).toEqual([
      'drwxr-xr-x 2 0 0 0 Nov 14 2023 bin',
      'lrwxrwxrwx 1 0 0 7 Nov 14 2023 bin/sh -> busybox',
      'drwxr-xr-x 2 0 0 0 Nov 14 2023 dev',
      'crw------- 1 0 0 5, 1 Nov 14 2023 dev/console',
      'brw-rw---- 1 0 0 254, 0 Nov 14 2023 dev/vda',
      '-rw-r--r-- 1 0 0 0 Nov 14 2023 empty',
      'drwxr-xr-x 2 0 0 0 Nov 14 2023 img2vm',
      'drwxr-xr-x 2 0 0 0 Nov 14 2023 img2vm/modules',
      '-rw-r--r-- 1 0 0 22 Nov 14 2023 img2vm/modules/a.ko',
      '-rwxr-xr-x 1 0 0 18 Nov 14 2023 init',
      'drwxrwxrwt 2 0 0 0 Nov 14 2023 tmp',
    ]);
    expect(await cpio(['-i', '--to-stdout', '--quiet', 'img2vm/modules/a.ko'], bytes)).toBe('read from a host path\n');
    expect(await cpio(['-i', '--to-stdout', '--quiet', 'init'], bytes)).toBe('#!/bin/sh\necho hi\n');
  });

  it('ends with TRAILER!!! and keeps every header on a 4-byte boundary', async () => {
    const bytes = await writeInitramfs(entries(), { mtime: 0 });
    let off = 0;
    const names: string[] = [];
    while (off < bytes.length) {
      expect(bytes.toString('ascii', off, off + 6)).toBe('070701');
      const field = (i: number) => Number.parseInt(bytes.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
      const size = field(6);
      const nameLen = field(11);
      names.push(bytes.toString('utf8', off + 110, off + 110 + nameLen - 1));
      off = Math.ceil((off + 110 + nameLen) / 4) * 4;
      off = Math.ceil((off + size) / 4) * 4;
    }
    expect(off).toBe(bytes.length);
    expect(names.at(-1)).toBe('TRAILER!!!');
    expect(names.slice(0, 3)).toEqual(['bin', 'bin/sh', 'dev']);
  });

  it('gives the same bytes whatever the input order, with the mtime it is given (0 by default)', async () => {
    const a = await writeInitramfs(entries(), { mtime: 1_700_000_000 });
    const b = await writeInitramfs([...entries()].reverse(), { mtime: 1_700_000_000 });
    expect(a.equals(b)).toBe(true);
    // The environment does not change it: the conversion passes its epoch (SOURCE_DATE_EPOCH, else 0) itself.
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    try {
      expect((await writeInitramfs(entries())).equals(await writeInitramfs(entries(), { mtime: 0 }))).toBe(true);
    } finally {
      delete process.env.SOURCE_DATE_EPOCH;
    }
    expect(a.equals(await writeInitramfs(entries(), { mtime: 0 }))).toBe(false);
  });

  it('compresses with gzip reproducibly, to the same archive', async () => {
    const plain = await writeInitramfs(entries(), { mtime: 5 });
    const gz1 = await writeInitramfs(entries(), { mtime: 5, compression: 'gzip' });
    const gz2 = await writeInitramfs(entries(), { mtime: 5, compression: 'gzip' });
    expect(gz1.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(gz1.equals(gz2)).toBe(true);
    expect(gunzipSync(gz1).equals(plain)).toBe(true);
  });

  it('refuses paths that repeat, climb out, or sit below a non-directory, and unreadable sources', async () => {
    await expect(
      writeInitramfs([
        { type: 'dir', path: 'a' },
        { type: 'dir', path: '/a/' },
      ]),
    ).rejects.toThrow(/"a" is given twice/);
    await expect(writeInitramfs([{ type: 'dir', path: 'a/../../etc' }])).rejects.toThrow(/climbs out/);
    await expect(
      writeInitramfs([
        { type: 'symlink', path: 'a', target: 'x' },
        { type: 'dir', path: 'a/b' },
      ]),
    ).rejects.toThrow(/"a" is a symlink but has "a\/b" below it/);
    const err = await writeInitramfs([{ type: 'file', path: 'x', content: { path: join(work, 'missing') } }]).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Img2vmError);
    expect((err as Img2vmError).message).toMatch(/cannot read .*missing for the initramfs \(x\)/);
  });
});

describe('img2vmInitramfsEntries', () => {
  const spec = { mode: 'workload' as const, root: { uuid: '0f3b1a52-94c4-4d8e-a4e9-2c6bb8e0a7d1' }, argv: ['/hello'] };

  it('lays out /init, /dev/console, the mount points, the modules in order and the spec naming them (and the optional ones)', async () => {
    const init = Buffer.from('\x7fELF fake init');
    const mods = [
      { name: 'virtio_blk.ko.xz', content: Buffer.from('b') },
      { name: 'failover.ko', content: Buffer.from('a') },
      { name: 'aes-ce-blk.ko.xz', content: Buffer.from('c'), optional: true },
    ];
    const bytes = await writeInitramfs(img2vmInitramfsEntries(spec, mods, init), { mtime: 0 });
    const list = await cpio(['-itv', '--numeric-uid-gid', '--quiet'], bytes);
    expect(list).toMatch(/^crw------- +1 0 +0 +5, +1 .* dev\/console$/m);
    expect(list).toMatch(/^-rwxr-xr-x +1 0 +0 +14 .* init$/m);
    for (const d of ['proc', 'sys', 'newroot']) expect(list).toMatch(new RegExp(`^d.* ${d}$`, 'm'));
    const specText = await cpio(['-i', '--to-stdout', '--quiet', 'img2vm/spec'], bytes);
    expect(specText.split('\n').filter((l) => l.startsWith('module'))).toEqual([
      'module /img2vm/modules/virtio_blk.ko.xz',
      'module /img2vm/modules/failover.ko',
      'module /img2vm/modules/aes-ce-blk.ko.xz',
      'module-optional /img2vm/modules/aes-ce-blk.ko.xz',
    ]);
    expect(await cpio(['-i', '--to-stdout', '--quiet', 'img2vm/modules/failover.ko'], bytes)).toBe('a');
  });

  it('says how to build the init when native/init is missing, and refuses odd module names', () => {
    let err: unknown;
    try {
      img2vmInitramfsEntries(spec, [], { path: join(work, 'no-init') });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Img2vmError);
    expect((err as Img2vmError).kind).toBe('toolMissing');
    expect((err as Img2vmError).hint).toMatch(/scripts\/build-native.sh/);
    expect(() =>
      img2vmInitramfsEntries(spec, [{ name: '../x.ko', content: Buffer.alloc(0) }], Buffer.alloc(1)),
    ).toThrow(/module file name/);
    const dup = { name: 'a.ko', content: Buffer.alloc(0) };
    expect(() => img2vmInitramfsEntries(spec, [dup, dup], Buffer.alloc(1))).toThrow(/invalid or repeated/);
  });
});
