// The tree flattener on well-formed layers: types, metadata, whiteouts, replacement, compression, statistics.
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import type { DeviceNode, FileNode, SymlinkNode } from '../../src/rootfs/tree.js';
import { makeTar, padTo512, rawHeader, T0, TAR_END } from './helpers.js';
import { at, bytes, EPOCH, expectExactRefs, flattenLayers, ls, must, paths, text } from './layers-helpers.js';

const sec = (d: Date): number => d.getTime() / 1000;

describe('entry types and metadata', () => {
  it('makes files, dirs and symlinks with exact content, owners, modes and mtimes', async () => {
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
    const { root, warnings } = await flattenLayers([layer]);
    expect(warnings).toEqual([]);
    expect(await text(root, 'etc/hostname')).toBe('box\n');
    const hn = must(root, 'etc/hostname').meta;
    expect([hn.uid, hn.gid, hn.mode, hn.mtime]).toEqual([1000, 1001, 0o644, { sec: sec(t1), nsec: 0 }]);
    expect(must(root, 'usr/bin/su').meta.mode).toBe(0o4755);
    expect(must(root, 'usr/bin/wall').meta).toMatchObject({ mode: 0o2755, gid: 5 });
    expect(must(root, 'tmp').meta).toMatchObject({ mode: 0o1777, mtime: { sec: sec(t1), nsec: 0 } });
    expect(must(root, 'home/u').meta).toMatchObject({
      mode: 0o700,
      uid: 1000,
      gid: 1000,
      mtime: { sec: sec(t1), nsec: 0 },
    });
    expect(must(root, 'etc').meta.mtime).toEqual({ sec: sec(t1), nsec: 0 });
    const bin = must(root, 'bin') as SymlinkNode;
    expect(bin).toMatchObject({
      kind: 'symlink',
      target: 'usr/bin',
      meta: { uid: 7, gid: 8, mode: 0o777, mtime: { sec: sec(t1), nsec: 0 } },
    });
    expect((must(root, 'abs') as SymlinkNode).target).toBe('/etc/hostname');
    expect((must(root, 'dangling') as SymlinkNode).target).toBe('../../nowhere/at/all');
  });

  it('missing parents are 0755 root:root at the given epoch; the root too until a layer sets it', async () => {
    const { root } = await flattenLayers([await makeTar([{ name: 'a/b/c', content: 'c', uid: 5 }])]);
    for (const p of ['a', 'a/b'])
      expect(must(root, p).meta).toEqual({ mode: 0o755, uid: 0, gid: 0, mtime: EPOCH, xattrs: new Map() });
    expect(root.meta).toEqual({ mode: 0o755, uid: 0, gid: 0, mtime: EPOCH, xattrs: new Map() });
  });

  it('applies the root directory entry ./ to the root itself', async () => {
    const layer = await makeTar([
      { name: './', type: 'directory', mode: 0o751, mtime: T0 },
      { name: './a', content: 'a' },
    ]);
    const { root } = await flattenLayers([layer]);
    expect(root.meta).toMatchObject({ mode: 0o751, mtime: { sec: sec(T0), nsec: 0 } });
    expect(await text(root, 'a')).toBe('a');
  });

  it('hard links are the same node, including to files of lower layers', async () => {
    const l1 = await makeTar([{ name: 'usr/bin/perl5.36', content: 'perl', mode: 0o755 }]);
    const l2 = await makeTar([
      { name: 'usr/bin/perl', type: 'link', linkname: 'usr/bin/perl5.36' },
      { name: 'bin/gzip', content: 'gz', mode: 0o755 },
      { name: 'bin/gunzip', type: 'link', linkname: './bin/gzip' },
      { name: 'bin/zcat', type: 'link', linkname: '/bin/gzip' },
    ]);
    const r = await flattenLayers([l1, l2]);
    expect(r.warnings).toEqual([]);
    expect(must(r.root, 'usr/bin/perl')).toBe(must(r.root, 'usr/bin/perl5.36'));
    const gz = must(r.root, 'bin/gzip');
    expect(must(r.root, 'bin/gunzip')).toBe(gz);
    expect(must(r.root, 'bin/zcat')).toBe(gz);
    expect(r.tree.nameCount(gz)).toBe(3);
    expect(r.stats.files).toBe(2);
    expect(r.stats.hardlinks).toBe(3);
    expectExactRefs(r);
  });

  it('a regular file met again is a new node; its hard links keep the old one', async () => {
    const l1 = await makeTar([
      { name: 'a', content: 'old' },
      { name: 'b', type: 'link', linkname: 'a' },
    ]);
    const l2 = await makeTar([{ name: 'a', content: 'new' }]);
    const r = await flattenLayers([l1, l2]);
    expect(await text(r.root, 'a')).toBe('new');
    expect(await text(r.root, 'b')).toBe('old');
    expect(must(r.root, 'a')).not.toBe(must(r.root, 'b'));
    expect(r.tree.nameCount(must(r.root, 'b'))).toBe(1);
    expectExactRefs(r);
  });

  it('a hard link to a symlink is that symlink node; hard links ignore their own header metadata', async () => {
    const r = await flattenLayers([
      await makeTar([
        { name: 'f', content: 'f', mode: 0o600, uid: 3 },
        { name: 'out', type: 'symlink', linkname: '../../outside' },
        { name: 'hl', type: 'link', linkname: 'out' },
        { name: 'hf', type: 'link', linkname: 'f', mode: 0o777, uid: 9 },
      ]),
    ]);
    expect(must(r.root, 'hl')).toBe(must(r.root, 'out'));
    expect(must(r.root, 'hf').meta).toMatchObject({ mode: 0o600, uid: 3 });
  });

  it('fifos and device nodes', async () => {
    const layer = await makeTar([
      { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev/loop9', type: 'block-device', devmajor: 7, devminor: 9, mode: 0o660, gid: 6 },
      { name: 'run/initctl', type: 'fifo', mode: 0o600 },
    ]);
    const { root, stats } = await flattenLayers([layer]);
    expect(must(root, 'dev/null')).toMatchObject({ kind: 'char', major: 1, minor: 3, meta: { mode: 0o666 } });
    expect(must(root, 'dev/loop9') as DeviceNode).toMatchObject({
      kind: 'block',
      major: 7,
      minor: 9,
      meta: { mode: 0o660, gid: 6 },
    });
    expect(must(root, 'run/initctl')).toMatchObject({ kind: 'fifo', meta: { mode: 0o600 } });
    expect(stats.specials).toBe(3);
  });

  it('keeps a 4000-byte path, a 200-byte component and non-ASCII names', async () => {
    const deep = Array.from({ length: 40 }, (_, i) => `d${String(i).padStart(2, '0')}${'x'.repeat(96)}`).join('/');
    const deepFile = `${deep.slice(0, 4000 - 3)}/ok`.slice(0, 4000);
    const long = 'n'.repeat(200);
    const names = ['café', 'Ünïcødé/日本語.txt', 'emoji-🐳'];
    const layer = await makeTar([
      { name: deepFile, content: 'deep' },
      { name: `dir/${long}`, content: 'long' },
      ...names.map((n) => ({ name: n, content: n })),
    ]);
    expect(Buffer.byteLength(deepFile)).toBe(4000);
    const { root } = await flattenLayers([layer]);
    expect(await text(root, deepFile)).toBe('deep');
    expect(await text(root, `dir/${long}`)).toBe('long');
    for (const n of names) expect(await text(root, n)).toBe(n);
  });

  it('keeps names that are not UTF-8 byte-exact, and reads GNU long names', async () => {
    const raw = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74]);
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
    const { root } = await flattenLayers([tar]);
    const f = root.entries.get(raw.toString('latin1')) as FileNode;
    expect(f.kind).toBe('file');
    expect(await text(root, longName)).toBe('gnu');
    const parts: Buffer[] = [];
    for await (const c of f.data.store.read(f.data)) parts.push(c);
    expect(Buffer.concat(parts).toString()).toBe('hi');
  });

  it('takes uid, gid and mtime from PAX records', async () => {
    const { root } = await flattenLayers([
      await makeTar([
        { name: 'big', content: 'x', pax: { uid: '3000000000', gid: '3000000001', mtime: '1600000000.5' } },
      ]),
    ]);
    expect(must(root, 'big').meta).toMatchObject({
      uid: 3000000000,
      gid: 3000000001,
      mtime: { sec: 1600000000, nsec: 500000000 },
    });
  });
});

describe('whiteouts', () => {
  it('remove a file and a whole directory of lower layers', async () => {
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
    const r = await flattenLayers([l1, l2]);
    expect(ls(r.root, 'etc')).toEqual(['keep']);
    expect(ls(r.root, 'var/cache')).toEqual([]);
    expect(r.stats.whiteouts).toBe(3);
    expectExactRefs(r);
  });

  it('an opaque directory hides lower children but keeps those of its own layer, wherever the marker sits', async () => {
    const l1 = await makeTar([
      { name: 'a/old1', content: '1' },
      { name: 'a/sub/old2', content: '2' },
      { name: 'b/old', content: '3' },
      { name: 'b/sub/old', content: '4' },
    ]);
    const l2 = await makeTar([
      { name: 'a/', type: 'directory' },
      { name: 'a/.wh..wh..opq', content: '' },
      { name: 'a/new', content: 'n' },
      { name: 'b/', type: 'directory' },
      { name: 'b/new', content: 'n' },
      { name: 'b/sub/', type: 'directory' },
      { name: 'b/sub/new', content: 'n' },
      { name: 'b/.wh..wh..opq', content: '' },
    ]);
    const r = await flattenLayers([l1, l2]);
    expect(ls(r.root, 'a')).toEqual(['new']);
    expect(ls(r.root, 'b')).toEqual(['new', 'sub']);
    expect(ls(r.root, 'b/sub')).toEqual(['new']);
    expectExactRefs(r);
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
    const r = await flattenLayers([l1, l2]);
    expect(await text(r.root, 'f')).toBe('upper');
    expect(await text(r.root, 'g')).toBe('upper');
    expect(ls(r.root, 'd')).toEqual(['upper']);
    expect(await text(r.root, 'h')).toBe('same layer only');
    expect(ls(r.root).filter((n) => n.startsWith('.wh.'))).toEqual([]);
    expectExactRefs(r);
  });

  it('a whiteout of a lower file keeps a hard link the upper layer made to it', async () => {
    const l1 = await makeTar([{ name: 'orig', content: 'shared' }]);
    const l2 = await makeTar([
      { name: 'copy', type: 'link', linkname: 'orig' },
      { name: '.wh.orig', content: '' },
    ]);
    const r = await flattenLayers([l1, l2]);
    expect(ls(r.root)).toEqual(['copy']);
    expect(await text(r.root, 'copy')).toBe('shared');
    expect(r.tree.nameCount(must(r.root, 'copy'))).toBe(1);
    expect(r.stats).toMatchObject({ files: 1, hardlinks: 0 });
    expectExactRefs(r);
  });

  it('ignores aufs metadata', async () => {
    const l1 = await makeTar([
      { name: '.wh..wh.aufs', content: '' },
      { name: '.wh..wh.plnk/', type: 'directory' },
      { name: '.wh..wh.plnk/123.456', content: 'x' },
      { name: 'ok', content: 'ok' },
    ]);
    const r = await flattenLayers([l1]);
    expect(ls(r.root)).toEqual(['ok']);
    expect(r.stats.whiteouts).toBe(0);
  });
});

describe('replacement', () => {
  it('file → dir → file across layers; a file replacing a dir releases the whole tree', async () => {
    const l1 = await makeTar([{ name: 'x', content: 'file' }]);
    const l2 = await makeTar([
      { name: 'x/', type: 'directory' },
      { name: 'x/child', content: 'c' },
      { name: 'x/sub/deep', content: 'd' },
    ]);
    const l3 = await makeTar([{ name: 'x', content: 'file again' }]);
    const two = await flattenLayers([l1, l2]);
    expect(must(two.root, 'x').kind).toBe('dir');
    expectExactRefs(two);
    const three = await flattenLayers([l1, l2, l3]);
    expect(await text(three.root, 'x')).toBe('file again');
    expect(three.store.releases).toBe(3);
    expectExactRefs(three);
  });

  it('a directory met again keeps its children and takes the new metadata; a symlink is replaced by a directory', async () => {
    const t2 = new Date('2022-02-02T02:02:02Z');
    const l1 = await makeTar([
      { name: 'etc/', type: 'directory', mode: 0o755, pax: { 'SCHILY.xattr.user.old': 'o' } },
      { name: 'etc/a', content: 'a' },
      { name: 'usr/lib/', type: 'directory' },
      { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
    ]);
    const l2 = await makeTar([
      { name: 'etc/', type: 'directory', mode: 0o700, uid: 3, mtime: t2, pax: { 'SCHILY.xattr.user.new': 'n' } },
      { name: 'etc/b', content: 'b' },
      { name: 'lib/', type: 'directory' },
      { name: 'lib/own', content: 'o' },
    ]);
    const { root } = await flattenLayers([l1, l2]);
    expect(ls(root, 'etc')).toEqual(['a', 'b']);
    expect(must(root, 'etc').meta).toEqual({
      mode: 0o700,
      uid: 3,
      gid: 0,
      mtime: { sec: sec(t2), nsec: 0 },
      xattrs: new Map([['user.new', Buffer.from('n')]]),
    });
    expect(must(root, 'lib').kind).toBe('dir');
    expect(ls(root, 'usr/lib')).toEqual([]);
  });

  it('a file under a symlinked directory goes through it; duplicates in one layer: the last wins', async () => {
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
    const r = await flattenLayers([l1, l2]);
    expect(await text(r.root, 'usr/bin/tool')).toBe('one');
    expect(must(r.root, 'bin').kind).toBe('symlink');
    expect((must(r.root, 'dup') as SymlinkNode).target).toBe('second');
    expect(await text(r.root, 'dup2')).toBe('file wins');
    expectExactRefs(r);
  });
});

describe('compression and corruption', () => {
  it('reads gzip layers (also multi-member)', async () => {
    const l1 = gzipSync(await makeTar([{ name: 'gz', content: 'zipped' }]));
    const l2 = await makeTar([{ name: 'multi', content: 'member' }]);
    const mm = Buffer.concat([gzipSync(l2.subarray(0, 700)), gzipSync(l2.subarray(700))]);
    const { root } = await flattenLayers([l1, mm]);
    expect(await text(root, 'gz')).toBe('zipped');
    expect(await text(root, 'multi')).toBe('member');
  });

  const corrupt = async (blob: Buffer): Promise<Img2vmError> => {
    const e = await flattenLayers([blob]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Img2vmError);
    expect((e as Img2vmError).kind).toBe('badImage');
    return e as Img2vmError;
  };

  it('truncated gzip, truncated tar (also inside a file) and garbage are badImage errors', async () => {
    const tar = await makeTar([{ name: 'f', content: Buffer.alloc(20000, 7) }]);
    const gz = gzipSync(tar);
    const e1 = await corrupt(gz.subarray(0, Math.floor(gz.length / 2)));
    expect(e1.message).toMatch(/layer is corrupt/);
    expect(e1.hint).toBeTruthy();
    expect((await corrupt(tar.subarray(0, 5000))).message).toMatch(
      /layer is corrupt: unexpected end of data in the content of "f"/,
    );
    expect((await corrupt(Buffer.from('this is not a tar archive at all'.repeat(40)))).message).toMatch(
      /layer is corrupt/,
    );
    const bad = Buffer.from(gz);
    bad[bad.length - 6]! ^= 0xff;
    await corrupt(bad);
  });

  it('a plain tar whose first name looks like a bzip2 magic is still a tar; real bzip2 is refused', async () => {
    const { root } = await flattenLayers([await makeTar([{ name: 'BZh91AY&SY', content: 'not bzip2' }])]);
    expect(await text(root, 'BZh91AY&SY')).toBe('not bzip2');
    expect((await corrupt(Buffer.from('BZh91AY&SY' + 'x'.repeat(100)))).message).toMatch(/bzip2/);
  });

  it('an empty blob is an empty layer', async () => {
    const { root, stats } = await flattenLayers([Buffer.alloc(0)]);
    expect(root.entries.size).toBe(0);
    expect(stats.blocks4k).toBe(1);
  });
});

describe('statistics', () => {
  it('describe the final tree', async () => {
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
    const r = await flattenLayers([l1, l2]);
    expect(r.stats).toEqual({
      files: 1,
      dirs: 1,
      symlinks: 2,
      hardlinks: 1,
      specials: 1,
      whiteouts: 1,
      xattrs: 0,
      bytes: 4,
      blocks4k: 1 + 1 + 2,
    });
    expect(at(r.root, 'etc/gone')).toBeUndefined();
    expect(paths(r.root)).toEqual([
      'etc dir',
      'etc/a file',
      'fifo fifo',
      'h file',
      `l symlink → ${'x'.repeat(70)}`,
      's symlink → etc/a',
    ]);
  });

  it('count only the non-zero 4 KiB blocks of a file, aligned to file offsets', async () => {
    const size = 8 * 1024 * 1024 + 100;
    const content = Buffer.alloc(size);
    content.write('head', 0);
    content.write('mid', 4 * 1024 * 1024 + 4094); // straddles a block boundary: two blocks
    content.write('tail', size - 4);
    const r = await flattenLayers([await makeTar([{ name: 'sparse', content }])]);
    expect(r.stats.bytes).toBe(size);
    expect(r.stats.blocks4k).toBe(4 + 1 /* the root directory */);
    expect((await bytes(r.root, 'sparse')).equals(content)).toBe(true);
    expect(r.store.storedBytes).toBeLessThan(4 * 64 * 1024);
  });
});
