// The runc builder's unpacking: layers flattened into the tree and made real in a host directory (types, owners, modes, times, xattrs, devices, hard links, holes).
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { materialise, mkfifoArgv, mknodArgv } from '../../src/rootfs/materialise.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { SpoolStore } from '../../src/rootfs/spool-store.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { binPath } from '../../src/rootfs/tree-path.js';
import { SETFATTR_RESTORE_ARGV, xattrRestoreScript } from '../../src/rootfs/xattr.js';
import {
  applyLayers,
  getXattrHex,
  makeTar,
  padTo512,
  patchBytes,
  rawHeader,
  sandbox,
  T0,
  TAR_END,
  type Sandbox,
} from './helpers.js';

let sb: Sandbox;
beforeEach(() => {
  sb = sandbox();
});
afterEach(() => sb.cleanup());

const p = (...parts: string[]): string => join(sb.root, ...parts);
const secs = (d: Date): number => d.getTime() / 1000;

describe('entry types and metadata', () => {
  it('creates files, dirs and symlinks with exact content, owners, modes and mtimes', async () => {
    const t1 = new Date('2021-05-06T07:08:09Z');
    const layer = await makeTar([
      { name: 'etc/', type: 'directory', mode: 0o755, mtime: t1 },
      { name: 'etc/hostname', content: 'box\n', mode: 0o644, uid: 1000, gid: 1001, mtime: t1 },
      { name: 'usr/bin/', type: 'directory', mode: 0o755 },
      { name: 'usr/bin/su', content: 'ELF', mode: 0o4755 },
      { name: 'usr/bin/wall', content: 'ELF', mode: 0o2755, gid: 5 },
      { name: 'tmp/', type: 'directory', mode: 0o1777, mtime: t1 },
      { name: 'home/u/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000, mtime: t1 },
      { name: 'home/u/.profile', content: 'x', uid: 1000, gid: 1000 },
      { name: 'bin', type: 'symlink', linkname: 'usr/bin', mtime: t1, uid: 7, gid: 8 },
      { name: 'abs', type: 'symlink', linkname: '/etc/hostname' },
      { name: 'dangling', type: 'symlink', linkname: '../../nowhere/at/all' },
    ]);
    const { warnings } = await applyLayers(sb.root, [layer]);
    expect(warnings).toEqual([]);

    expect(readFileSync(p('etc/hostname'), 'utf8')).toBe('box\n');
    const hn = lstatSync(p('etc/hostname'));
    expect([hn.uid, hn.gid, hn.mode & 0o7777, hn.mtimeMs / 1000]).toEqual([1000, 1001, 0o644, secs(t1)]);
    expect(lstatSync(p('usr/bin/su')).mode & 0o7777).toBe(0o4755);
    expect(lstatSync(p('usr/bin/wall')).mode & 0o7777).toBe(0o2755);
    expect(lstatSync(p('usr/bin/wall')).gid).toBe(5);
    const tmp = lstatSync(p('tmp'));
    expect(tmp.mode & 0o7777).toBe(0o1777);
    expect(tmp.mtimeMs / 1000).toBe(secs(t1));
    const home = lstatSync(p('home/u'));
    expect([home.mode & 0o7777, home.uid, home.gid, home.mtimeMs / 1000]).toEqual([0o700, 1000, 1000, secs(t1)]);
    // The directory's mtime survives the child written after it.
    expect(lstatSync(p('etc')).mtimeMs / 1000).toBe(secs(t1));

    const bin = lstatSync(p('bin'));
    expect(bin.isSymbolicLink()).toBe(true);
    expect([bin.uid, bin.gid, bin.mtimeMs / 1000]).toEqual([7, 8, secs(t1)]);
    expect(readlinkSync(p('bin'))).toBe('usr/bin');
    expect(readlinkSync(p('abs'))).toBe('/etc/hostname');
    expect(readlinkSync(p('dangling'))).toBe('../../nowhere/at/all');
  });

  it('applies the root directory entry ./ to the root itself', async () => {
    const layer = await makeTar([
      { name: './', type: 'directory', mode: 0o751, mtime: T0 },
      { name: './a', content: 'a' },
    ]);
    await applyLayers(sb.root, [layer]);
    const st = lstatSync(sb.root);
    expect(st.mode & 0o7777).toBe(0o751);
    expect(st.mtimeMs / 1000).toBe(secs(T0));
    expect(readFileSync(p('a'), 'utf8')).toBe('a');
  });

  it('makes hardlinks that share the inode, including to files of lower layers', async () => {
    const l1 = await makeTar([{ name: 'usr/bin/perl5.36', content: 'perl', mode: 0o755 }]);
    const l2 = await makeTar([
      { name: 'usr/bin/perl', type: 'link', linkname: 'usr/bin/perl5.36' },
      { name: 'bin/gzip', content: 'gz', mode: 0o755 },
      { name: 'bin/gunzip', type: 'link', linkname: './bin/gzip' },
      { name: 'bin/zcat', type: 'link', linkname: '/bin/gzip' },
    ]);
    const { stats, warnings } = await applyLayers(sb.root, [l1, l2]);
    expect(warnings).toEqual([]);
    expect(lstatSync(p('usr/bin/perl')).ino).toBe(lstatSync(p('usr/bin/perl5.36')).ino);
    const gz = lstatSync(p('bin/gzip'));
    expect(lstatSync(p('bin/gunzip')).ino).toBe(gz.ino);
    expect(lstatSync(p('bin/zcat')).ino).toBe(gz.ino);
    expect(gz.nlink).toBe(3);
    expect(stats.files).toBe(2);
    expect(stats.hardlinks).toBe(3);
  });

  it('recreates a regular file met again instead of writing through its hardlinks', async () => {
    const l1 = await makeTar([
      { name: 'a', content: 'old' },
      { name: 'b', type: 'link', linkname: 'a' },
    ]);
    const l2 = await makeTar([{ name: 'a', content: 'new' }]);
    await applyLayers(sb.root, [l1, l2]);
    expect(readFileSync(p('a'), 'utf8')).toBe('new');
    expect(readFileSync(p('b'), 'utf8')).toBe('old');
    expect(lstatSync(p('a')).ino).not.toBe(lstatSync(p('b')).ino);
  });

  it('sets xattrs byte-exactly, including a security.capability with non-UTF-8 bytes, after chown', async () => {
    // v2 capability, effective, permitted = cap_setuid (bit 7 → byte 0x80) + cap_net_raw (bit 13).
    const cap = Buffer.from('0100000280200000000000000000000000000000', 'hex');
    const placeholder = 'Q'.repeat(cap.length);
    const tar = await makeTar([
      {
        name: 'usr/bin/ping',
        content: 'ELF',
        mode: 0o755,
        uid: 0,
        gid: 0,
        pax: { 'SCHILY.xattr.security.capability': placeholder },
      },
      {
        name: 'data',
        content: 'x',
        uid: 1000,
        pax: { 'SCHILY.xattr.user.comment': 'héllo', 'SCHILY.xattr.trusted.odd name\twith tab': 'v' },
      },
      { name: 'dir/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } },
    ]);
    const { stats, warnings } = await applyLayers(sb.root, [patchBytes(tar, placeholder, cap)]);
    expect(warnings).toEqual([]);
    expect(getXattrHex(p('usr/bin/ping'), 'security.capability')).toBe(cap.toString('hex'));
    expect(getXattrHex(p('data'), 'user.comment')).toBe(Buffer.from('héllo').toString('hex'));
    expect(getXattrHex(p('data'), 'trusted.odd name\twith tab')).toBe('76');
    expect(getXattrHex(p('dir'), 'trusted.overlay.opaque')).toBe('79');
    expect(stats.xattrs).toBe(4);
  });

  it("an access ACL as an xattr ends as Docker's unpacker leaves it: the header's mode, the ACL following it", async () => {
    // user::rwx, group::r-x, group:100:rwx, mask::rwx, other::--- on a file and a directory whose headers say 0640 and 0750.
    const acl = Buffer.from(
      '0200000001000700ffffffff04000500ffffffff080007006400000010000700ffffffff20000000ffffffff',
      'hex',
    );
    const placeholder = (c: string): string => c.repeat(acl.length);
    let tar = await makeTar([
      { name: 'f', content: 'x', mode: 0o640, pax: { 'SCHILY.xattr.system.posix_acl_access': placeholder('F') } },
      { name: 'd/', type: 'directory', mode: 0o750, pax: { 'SCHILY.xattr.system.posix_acl_access': placeholder('D') } },
    ]);
    tar = patchBytes(patchBytes(tar, placeholder('F'), acl), placeholder('D'), acl);
    const { warnings } = await applyLayers(sb.root, [tar]);
    expect(warnings).toEqual([]);
    expect(lstatSync(p('f')).mode & 0o7777).toBe(0o640);
    expect(lstatSync(p('d')).mode & 0o7777).toBe(0o750);
    // chmod rewrote user:: to rw- (f), mask:: to r-- (f) and r-x (d).
    expect(getXattrHex(p('f'), 'system.posix_acl_access')).toBe(
      '0200000001000600ffffffff04000500ffffffff080007006400000010000400ffffffff20000000ffffffff',
    );
    expect(getXattrHex(p('d'), 'system.posix_acl_access')).toBe(
      '0200000001000700ffffffff04000500ffffffff080007006400000010000500ffffffff20000000ffffffff',
    );
  });

  it('creates fifos and device nodes', async () => {
    const layer = await makeTar([
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev/loop9', type: 'block-device', devmajor: 7, devminor: 9, mode: 0o660, gid: 6 },
      { name: 'run/initctl', type: 'fifo', mode: 0o600 },
    ]);
    const { stats } = await applyLayers(sb.root, [layer]);
    const nul = lstatSync(p('dev/null'));
    expect(nul.isCharacterDevice()).toBe(true);
    expect([Math.floor(nul.rdev / 256), nul.rdev % 256, nul.mode & 0o7777]).toEqual([1, 3, 0o666]);
    const loop = lstatSync(p('dev/loop9'));
    expect(loop.isBlockDevice()).toBe(true);
    expect([Math.floor(loop.rdev / 256), loop.rdev % 256, loop.gid, loop.mode & 0o7777]).toEqual([7, 9, 6, 0o660]);
    const fifo = lstatSync(p('run/initctl'));
    expect(fifo.isFIFO()).toBe(true);
    expect(fifo.mode & 0o7777).toBe(0o600);
    expect(stats.specials).toBe(3);
    expect(readdirSync(sb.root).filter((n) => n.startsWith('.img2vm'))).toEqual([]);
  });

  it('a sparse file of GNU tar -S lands with its holes skipped: 1 GiB with 4 KiB of data', async () => {
    const src = join(sb.dir, 'src');
    mkdirSync(src);
    const fd = openSync(join(src, 'big'), 'w');
    writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 512 * 1024 * 1024);
    ftruncateSync(fd, 1024 * 1024 * 1024);
    closeSync(fd);
    const r = spawnSync('tar', ['--format=posix', '-S', '--numeric-owner', '-C', src, '-cf', '-', 'big'], {
      maxBuffer: 1 << 20,
    });
    expect(r.status).toBe(0);
    const { stats } = await applyLayers(sb.root, [r.stdout]);
    const st = statSync(p('big'));
    expect(st.size).toBe(1024 * 1024 * 1024);
    expect(st.blocks * 512).toBeLessThanOrEqual(64 * 1024);
    expect(stats.blocks4k).toBe(1 + 1);
    const mid = Buffer.alloc(8192);
    const rfd = openSync(p('big'), 'r');
    readSync(rfd, mid, 0, 8192, 512 * 1024 * 1024 - 4096);
    closeSync(rfd);
    expect(mid.equals(Buffer.concat([Buffer.alloc(4096), Buffer.alloc(4096, 0x5a)]))).toBe(true);
  });

  it('writes runs of zero blocks as holes', async () => {
    const size = 8 * 1024 * 1024 + 100;
    const content = Buffer.alloc(size);
    content.write('head', 0);
    content.write('middle', 4 * 1024 * 1024 + 10);
    content.write('tail', size - 4);
    const layer = await makeTar([{ name: 'sparse', content }]);
    const { stats } = await applyLayers(sb.root, [layer]);
    const st = statSync(p('sparse'));
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThanOrEqual(64 * 1024);
    expect(readFileSync(p('sparse')).equals(content)).toBe(true);
    expect(stats.blocks4k).toBeGreaterThanOrEqual(3);
    expect(stats.blocks4k).toBeLessThan(10);
    expect(stats.bytes).toBe(size);
  });

  it('handles a 4000-byte path, a 200-byte component and non-ASCII names', async () => {
    const deep = Array.from({ length: 40 }, (_, i) => `d${String(i).padStart(2, '0')}${'x'.repeat(96)}`).join('/'); // 40 × 100 bytes
    const deepFile = `${deep.slice(0, 4000 - 3)}/ok`.slice(0, 4000);
    const long = 'n'.repeat(200);
    const names = ['café', 'Ünïcødé/日本語.txt', 'emoji-🐳'];
    const layer = await makeTar([
      { name: deepFile, content: 'deep' },
      { name: `dir/${long}`, content: 'long' },
      ...names.map((n) => ({ name: n, content: n })),
    ]);
    expect(Buffer.byteLength(deepFile)).toBe(4000);
    await applyLayers(sb.root, [layer]);
    expect(readFileSync(p(deepFile), 'utf8')).toBe('deep');
    expect(readFileSync(p('dir', long), 'utf8')).toBe('long');
    for (const n of names) expect(readFileSync(p(n), 'utf8')).toBe(n);
  });

  it('a path of 4000 bytes is made however long the path of the directory it is made in', async () => {
    // Each entry is made relative to its open parent: the host path of the bundle does not count against PATH_MAX.
    const deepRoot = join(sb.dir, ...Array.from({ length: 4 }, (_, i) => `${i}${'r'.repeat(99)}`));
    mkdirSync(deepRoot, { recursive: true });
    const name =
      Array.from({ length: 38 }, (_, i) => `d${String(i).padStart(2, '0')}${'x'.repeat(96)}`).join('/') +
      '/' +
      'f'.repeat(200);
    expect(Buffer.byteLength(name)).toBe(4000);
    const { warnings } = await applyLayers(deepRoot, [await makeTar([{ name, content: 'deep', mode: 0o640, uid: 7 }])]);
    expect(warnings).toEqual([]);
    const parts = name.split('/');
    const fd = openSync(join(deepRoot, ...parts.slice(0, 20)), 'r');
    try {
      const st = lstatSync(`/proc/self/fd/${fd}/${parts.slice(20).join('/')}`);
      expect([st.isFile(), st.mode & 0o7777, st.uid, st.size]).toEqual([true, 0o640, 7, 4]);
    } finally {
      closeSync(fd);
    }
  });

  it('keeps names that are not UTF-8 byte-exact, and reads GNU long names', async () => {
    const raw = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74]); // "f\xff\xfe.t"
    const longName = `gnu/${'g'.repeat(150)}/file`;
    const tar = Buffer.concat([
      rawHeader({ name: raw, size: 2 }),
      padTo512(Buffer.from('hi')),
      rawHeader({ name: '././@LongLink', typeflag: 'L', size: longName.length + 1, gnu: true }),
      padTo512(Buffer.from(`${longName}\0`)),
      rawHeader({ name: longName.slice(0, 100), size: 3, gnu: true }),
      padTo512(Buffer.from('gnu')),
      TAR_END,
    ]);
    await applyLayers(sb.root, [tar]);
    const entries = readdirSync(sb.root, { encoding: 'buffer' });
    expect(entries.some((e) => e.equals(raw))).toBe(true);
    expect(readFileSync(Buffer.concat([Buffer.from(`${sb.root}/`), raw]), 'utf8')).toBe('hi');
    expect(readFileSync(p(longName), 'utf8')).toBe('gnu');
  });

  it('takes uid, gid and mtime from PAX records', async () => {
    const layer = await makeTar([
      { name: 'big', content: 'x', pax: { uid: '3000000000', gid: '3000000001', mtime: '1600000000.5' } },
    ]);
    await applyLayers(sb.root, [layer]);
    const st = lstatSync(p('big'));
    expect([st.uid, st.gid, st.mtimeMs]).toEqual([3000000000, 3000000001, 1600000000500]);
  });
});

describe('whiteouts', () => {
  it('removes a file and a whole directory of lower layers', async () => {
    const l1 = await makeTar([
      { name: 'etc/keep', content: 'k' },
      { name: 'etc/gone', content: 'g' },
      { name: 'var/cache/apt/', type: 'directory' },
      { name: 'var/cache/apt/pkgcache.bin', content: 'c' },
      { name: 'var/cache/apt/archives/x.deb', content: 'd' },
    ]);
    const l2 = await makeTar([
      { name: 'etc/.wh.gone', content: '' },
      { name: 'var/cache/.wh.apt', content: '' },
      { name: 'etc/.wh.never-existed', content: '' },
    ]);
    const { stats } = await applyLayers(sb.root, [l1, l2]);
    expect(readdirSync(p('etc'))).toEqual(['keep']);
    expect(readdirSync(p('var/cache'))).toEqual([]);
    expect(stats.whiteouts).toBe(3);
  });

  it('opaque directory hides lower children but keeps those of its own layer, wherever the marker sits', async () => {
    const l1 = await makeTar([
      { name: 'a/old1', content: '1' },
      { name: 'a/sub/old2', content: '2' },
      { name: 'b/old', content: '3' },
      { name: 'b/sub/old', content: '4' },
    ]);
    const l2 = await makeTar([
      // marker first
      { name: 'a/', type: 'directory' },
      { name: 'a/.wh..wh..opq', content: '' },
      { name: 'a/new', content: 'n' },
      // marker last: same-layer children (and a same-layer subdir's own children) survive
      { name: 'b/', type: 'directory' },
      { name: 'b/new', content: 'n' },
      { name: 'b/sub/', type: 'directory' },
      { name: 'b/sub/new', content: 'n' },
      { name: 'b/.wh..wh..opq', content: '' },
    ]);
    await applyLayers(sb.root, [l1, l2]);
    expect(readdirSync(p('a')).sort()).toEqual(['new']);
    expect(readdirSync(p('b')).sort()).toEqual(['new', 'sub']);
    expect(readdirSync(p('b/sub')).sort()).toEqual(['new']);
  });

  it('a whiteout does not hide an entry of its own layer, before or after it', async () => {
    const l1 = await makeTar([
      { name: 'f', content: 'lower' },
      { name: 'g', content: 'lower' },
      { name: 'd/lower', content: 'x' },
    ]);
    const l2 = await makeTar([
      { name: '.wh.f', content: '' },
      { name: 'f', content: 'upper' },
      { name: 'g', content: 'upper' },
      { name: '.wh.g', content: '' },
      { name: 'd/upper', content: 'y' },
      { name: '.wh.d', content: '' },
      { name: 'h', content: 'same layer only' },
      { name: '.wh.h', content: '' },
    ]);
    await applyLayers(sb.root, [l1, l2]);
    expect(readFileSync(p('f'), 'utf8')).toBe('upper');
    expect(readFileSync(p('g'), 'utf8')).toBe('upper');
    expect(readdirSync(p('d'))).toEqual(['upper']);
    expect(readFileSync(p('h'), 'utf8')).toBe('same layer only');
    expect(readdirSync(sb.root).filter((n) => n.startsWith('.wh.'))).toEqual([]);
  });

  it('ignores aufs metadata', async () => {
    const l1 = await makeTar([
      { name: '.wh..wh.aufs', content: '' },
      { name: '.wh..wh.plnk/', type: 'directory' },
      { name: '.wh..wh.plnk/123.456', content: 'x' },
      { name: 'ok', content: 'ok' },
    ]);
    await applyLayers(sb.root, [l1]);
    expect(readdirSync(sb.root)).toEqual(['ok']);
  });
});

describe('replacement', () => {
  it('replaces file → dir → file across layers, and a dir by a file removes the tree', async () => {
    const l1 = await makeTar([{ name: 'x', content: 'file' }]);
    const l2 = await makeTar([
      { name: 'x/', type: 'directory' },
      { name: 'x/child', content: 'c' },
      { name: 'x/sub/deep', content: 'd' },
    ]);
    const l3 = await makeTar([{ name: 'x', content: 'file again' }]);
    mkdirSync(p('two'));
    mkdirSync(p('three'));
    await applyLayers(p('two'), [l1, l2]);
    expect(lstatSync(p('two', 'x')).isDirectory()).toBe(true);
    expect(readdirSync(p('two', 'x')).sort()).toEqual(['child', 'sub']);
    await applyLayers(p('three'), [l1, l2, l3]);
    expect(lstatSync(p('three', 'x')).isFile()).toBe(true);
    expect(readFileSync(p('three', 'x'), 'utf8')).toBe('file again');
  });

  it('updates an existing directory in place, keeping its children; replaces a symlink by a directory', async () => {
    const t2 = new Date('2022-02-02T02:02:02Z');
    const l1 = await makeTar([
      { name: 'etc/', type: 'directory', mode: 0o755 },
      { name: 'etc/a', content: 'a' },
      { name: 'usr/lib/', type: 'directory' },
      { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
    ]);
    const l2 = await makeTar([
      { name: 'etc/', type: 'directory', mode: 0o700, uid: 3, mtime: t2 },
      { name: 'etc/b', content: 'b' },
      { name: 'lib/', type: 'directory' },
      { name: 'lib/own', content: 'o' },
    ]);
    await applyLayers(sb.root, [l1, l2]);
    expect(readdirSync(p('etc')).sort()).toEqual(['a', 'b']);
    const st = lstatSync(p('etc'));
    expect([st.mode & 0o7777, st.uid, st.mtimeMs / 1000]).toEqual([0o700, 3, secs(t2)]);
    expect(lstatSync(p('lib')).isDirectory()).toBe(true);
    expect(readdirSync(p('usr/lib'))).toEqual([]);
  });

  it('a file under a symlinked directory goes through it; duplicates in one layer: last wins', async () => {
    const l1 = await makeTar([
      { name: 'usr/bin/', type: 'directory' },
      { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
    ]);
    const l2 = await makeTar([
      { name: 'bin/tool', content: 'one' },
      { name: 'dup', content: 'first' },
      { name: 'dup', type: 'symlink', linkname: 'second' },
      { name: 'dup2', type: 'directory' },
      { name: 'dup2', content: 'file wins' },
    ]);
    await applyLayers(sb.root, [l1, l2]);
    expect(readFileSync(p('usr/bin/tool'), 'utf8')).toBe('one');
    expect(lstatSync(p('bin')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(p('dup'))).toBe('second');
    expect(readFileSync(p('dup2'), 'utf8')).toBe('file wins');
  });
});

describe('compression', () => {
  it('gzip layers (also multi-member) land whole', async () => {
    const l1 = gzipSync(await makeTar([{ name: 'gz', content: 'zipped' }]));
    const l2 = await makeTar([{ name: 'multi', content: 'member' }]);
    const mm = Buffer.concat([gzipSync(l2.subarray(0, 700)), gzipSync(l2.subarray(700))]);
    await applyLayers(sb.root, [l1, mm]);
    expect(readFileSync(p('gz'), 'utf8')).toBe('zipped');
    expect(readFileSync(p('multi'), 'utf8')).toBe('member');
  });

  it('an empty blob is an empty layer', async () => {
    await applyLayers(sb.root, [Buffer.alloc(0)]);
    expect(readdirSync(sb.root)).toEqual([]);
  });
});

describe('decompression bomb', () => {
  it('streams 256 MiB of gzip-compressed zeros into a sparse file with bounded memory', async () => {
    const size = 256 * 1024 * 1024;
    const member = gzipSync(Buffer.alloc(1024 * 1024)); // ~1 KiB each; gzip members concatenate
    const parts = [gzipSync(rawHeader({ name: 'bomb', size }))];
    for (let i = 0; i < size / (1024 * 1024); i++) parts.push(member);
    parts.push(gzipSync(TAR_END));
    const blob = Buffer.concat(parts);
    expect(blob.length).toBeLessThan(1024 * 1024);

    const before = process.memoryUsage().rss;
    let peak = before;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    try {
      const { stats } = await applyLayers(sb.root, [blob]);
      expect(stats.bytes).toBe(size);
      expect(stats.blocks4k).toBeLessThan(5);
    } finally {
      clearInterval(timer);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(peak - before).toBeLessThan(96 * 1024 * 1024);
    const st = statSync(p('bomb'));
    expect(st.size).toBe(size);
    expect(st.blocks).toBe(0);
  });
});

describe('statistics', () => {
  it('describes the final tree', async () => {
    const l1 = await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/a', content: 'aaaa' },
      { name: 'etc/gone', content: 'gone!' },
      { name: 'l', type: 'symlink', linkname: 'x'.repeat(70) },
      { name: 's', type: 'symlink', linkname: 'etc/a' },
      { name: 'h', type: 'link', linkname: 'etc/a' },
      { name: 'fifo', type: 'fifo' },
    ]);
    const l2 = await makeTar([{ name: 'etc/.wh.gone', content: '' }]);
    const { stats } = await applyLayers(sb.root, [l1, l2]);
    expect(stats).toEqual({
      files: 1,
      dirs: 1,
      symlinks: 2,
      hardlinks: 1,
      specials: 1,
      whiteouts: 1,
      xattrs: 0,
      bytes: 4,
      blocks4k: 1 /* etc/a */ + 1 /* long symlink */ + 2 /* root and etc directories */,
    });
    expect(existsSync(p('etc/gone'))).toBe(false);
  });
});

describe('a tree img2vm edited, with contents in another store', () => {
  it('is copied through the spool: contents with their holes, one inode for a hard link, xattrs on the root and a directory', async () => {
    const tree = new RootTree({ store: new MemoryStore(), epoch: { sec: 1_600_000_000, nsec: 500_000_000 } });
    const big = Buffer.alloc(3 << 20);
    big.write('head');
    big.write('tail', big.length - 4);
    tree.writeFile(binPath('/var/big'), big, { mode: 0o600, uid: 5, gid: 6 });
    tree.link(binPath('/var/big-too'), binPath('/var/big'));
    tree.symlink(binPath('/link'), binPath('var/big'));
    tree.mkdirp(binPath('/tagged'), { mode: 0o750, xattrs: new Map([['trusted.tag', Buffer.from([0, 0xff])]]) });
    tree.root.meta = { ...tree.root.meta, mode: 0o711, xattrs: new Map([['user.root', Buffer.from('r')]]) };
    const spool = new SpoolStore(join(sb.dir, 'spool'));
    const warnings: string[] = [];
    await materialise(tree, sb.root, spool, { onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([]);
    expect(readFileSync(p('var', 'big')).equals(big)).toBe(true);
    const st = lstatSync(p('var', 'big'));
    expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs, st.nlink]).toEqual([0o600, 5, 6, 1_600_000_000_500, 3]);
    expect(st.blocks * 512).toBeLessThanOrEqual(16 * 1024);
    expect(lstatSync(p('var', 'big-too')).ino).toBe(st.ino);
    expect(readlinkSync(p('link'))).toBe('var/big');
    expect(lstatSync(p('tagged')).mode & 0o7777).toBe(0o750);
    expect(getXattrHex(p('tagged'), 'trusted.tag')).toBe('00ff');
    expect(lstatSync(sb.root).mode & 0o7777).toBe(0o711);
    expect(getXattrHex(sb.root, 'user.root')).toBe('72');
    // The spool still names the linked file; removing it leaves the tree's two names.
    rmSync(spool.dir, { recursive: true });
    expect(lstatSync(p('var', 'big')).nlink).toBe(2);
  });

  it("an aborted signal stops it before the first entry, with the signal's reason", async () => {
    const tree = new RootTree({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });
    tree.writeFile(binPath('/f'), 'x', { mode: 0o644 });
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(materialise(tree, sb.root, new SpoolStore(join(sb.dir, 'spool')), { signal: ac.signal })).rejects.toBe(
      reason,
    );
    expect(readdirSync(sb.root)).toEqual([]);
  });
});

describe('host tools', () => {
  it('get img2vm-chosen paths only: exact argv for mknod and mkfifo', () => {
    expect(mknodArgv('/spool/x7', 'char', 1, 3)).toEqual(['/spool/x7', 'c', '1', '3']);
    expect(mknodArgv('/spool/x8', 'block', 259, 70000)).toEqual(['/spool/x8', 'b', '259', '70000']);
    expect(mkfifoArgv('/spool/x9')).toEqual(['/spool/x9']);
  });

  it('the xattr restore script escapes paths and names and hex-encodes values', () => {
    const script = xattrRestoreScript([
      {
        path: '/r/a b\n\xff',
        attrs: [
          ['security.capability', Buffer.from([1, 0x80])],
          ['user.x=y', Buffer.alloc(0)],
        ],
      },
      { path: '/r/none', attrs: [] },
    ]);
    expect(script.toString('latin1')).toBe(
      '# file: /r/a\\040b\\012\\377\nsecurity.capability=0x0180\nuser.x\\075y=0x\n\n',
    );
    expect(SETFATTR_RESTORE_ARGV).toEqual(['-h', '--restore=-']);
  });
});
