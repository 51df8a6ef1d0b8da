// Hostile layers on the tree flattener: every entry lands inside the root where a safe reading exists, or is refused.
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import type { SymlinkNode } from '../../src/rootfs/tree.js';
import { makeTar, padTo512, rawHeader, TAR_END } from './helpers.js';
import { at, EPOCH, expectExactRefs, flattenLayers, ls, must, paths, text, ustar } from './layers-helpers.js';

async function expectBadImage(layers: Buffer[], re: RegExp): Promise<Img2vmError> {
  const e = await flattenLayers(layers).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(Img2vmError);
  expect((e as Img2vmError).kind).toBe('badImage');
  expect((e as Img2vmError).message).toMatch(re);
  expect((e as Img2vmError).hint).toBeTruthy();
  return e as Img2vmError;
}

describe('paths that try to leave the root', () => {
  it('../../etc/x and /abs/x are clamped to the root', async () => {
    const { root } = await flattenLayers([
      await makeTar([
        { name: '../../etc/x', content: 'dotdot' },
        { name: '../../../../../../../../b', content: 'deep dotdot' },
        { name: '/abs/x', content: 'abs' },
        { name: 'a/../../../c', content: 'mixed' },
      ]),
    ]);
    expect(paths(root)).toEqual(['a dir', 'abs dir', 'abs/x file', 'b file', 'c file', 'etc dir', 'etc/x file']);
    expect(await text(root, 'etc/x')).toBe('dotdot');
    expect(await text(root, 'c')).toBe('mixed');
  });

  it('a symlink to / or ../../.. is followed inside the root', async () => {
    const { root, warnings } = await flattenLayers([
      await makeTar([
        { name: 'evil', type: 'symlink', linkname: '/' },
        { name: 'evil/tmp/x', content: 'pwned?' },
        { name: 'evil2', type: 'symlink', linkname: '../../..' },
        { name: 'evil2/etc/passwd', content: 'inside' },
        { name: 'evil3', type: 'symlink', linkname: '/../../../../outside' },
        { name: 'evil3/secret', content: 'inside too' },
      ]),
    ]);
    expect(warnings).toEqual([]);
    expect(await text(root, 'tmp/x')).toBe('pwned?');
    expect(await text(root, 'etc/passwd')).toBe('inside');
    expect(await text(root, 'outside/secret')).toBe('inside too');
    expect((must(root, 'evil') as SymlinkNode).target).toBe('/');
  });

  it('a symlink chain across layers is resolved within the root', async () => {
    const l1 = await makeTar([
      { name: 'real/', type: 'directory' },
      { name: 'alias', type: 'symlink', linkname: 'real' },
      { name: 'sub/up', type: 'symlink', linkname: '../alias/../../../..' },
    ]);
    const l2 = await makeTar([
      { name: 'alias/f', content: 'via alias' },
      { name: 'sub/up/g', content: 'via up' },
    ]);
    const { root } = await flattenLayers([l1, l2]);
    expect(await text(root, 'real/f')).toBe('via alias');
    expect(must(root, 'alias').kind).toBe('symlink');
    expect(await text(root, 'g')).toBe('via up');
  });

  it('the final component is never followed: a file replaces a symlink to outside', async () => {
    const l1 = await makeTar([
      { name: 'etc/passwd', content: 'root:x:0:0' },
      { name: 'victim', type: 'symlink', linkname: '/etc/passwd' },
      { name: 'vdir', type: 'symlink', linkname: '/etc' },
    ]);
    const l2 = await makeTar([
      { name: 'victim', content: 'overwrite?' },
      { name: 'vdir', type: 'directory', mode: 0o777 },
    ]);
    const r = await flattenLayers([l1, l2]);
    expect(await text(r.root, 'victim')).toBe('overwrite?');
    expect(await text(r.root, 'etc/passwd')).toBe('root:x:0:0');
    expect(must(r.root, 'vdir')).toMatchObject({ kind: 'dir', meta: { mode: 0o777 } });
    expect(must(r.root, 'etc').meta.mode).toBe(0o755);
  });

  it('devices, fifos and xattrs under an escaping symlink land inside the root', async () => {
    const { root } = await flattenLayers([
      await makeTar([
        { name: 'evil', type: 'symlink', linkname: '/../..' },
        { name: 'evil/dev/nul2', type: 'character-device', devmajor: 1, devminor: 3 },
        { name: 'evil/fifo', type: 'fifo' },
        { name: 'evil/attr', content: 'a', pax: { 'SCHILY.xattr.user.x': '1' } },
      ]),
    ]);
    expect(must(root, 'dev/nul2').kind).toBe('char');
    expect(must(root, 'fifo').kind).toBe('fifo');
    expect(must(root, 'attr').meta.xattrs).toEqual(new Map([['user.x', Buffer.from('1')]]));
  });

  it('a directory entry ../ only touches the root; other kinds cannot replace a directory', async () => {
    const { root, warnings } = await flattenLayers([
      await makeTar([
        { name: '../', type: 'directory', mode: 0o700 },
        { name: '../../..', type: 'directory', mode: 0o700 },
        { name: '..', content: 'a file cannot replace the root' },
        { name: 'x/..', type: 'symlink', linkname: '/' },
      ]),
    ]);
    expect(root.meta.mode).toBe(0o700);
    expect(paths(root)).toEqual(['x dir']);
    expect(warnings).toHaveLength(2);
  });
});

describe('hard links', () => {
  it('to ../../etc/passwd links the root’s own file', async () => {
    const { root, warnings } = await flattenLayers([
      await makeTar([
        { name: 'etc/passwd', content: 'root:x:0:0\n' },
        { name: 'pw', type: 'link', linkname: '../../etc/passwd' },
        { name: 'pw2', type: 'link', linkname: '/../../../etc/passwd' },
      ]),
    ]);
    expect(warnings).toEqual([]);
    expect(must(root, 'pw')).toBe(must(root, 'etc/passwd'));
    expect(must(root, 'pw2')).toBe(must(root, 'etc/passwd'));
  });

  it('to a missing target, a directory, or through a symlink to somewhere missing, is skipped with a warning', async () => {
    const { root, warnings } = await flattenLayers([
      await makeTar([
        { name: 'd/', type: 'directory' },
        { name: 'pw', type: 'link', linkname: '../../etc/passwd' },
        { name: 'missing', type: 'link', linkname: 'no/such/file' },
        { name: 'dirlink', type: 'link', linkname: 'd' },
        { name: 'rootlink', type: 'link', linkname: '..' },
        { name: 'esc', type: 'symlink', linkname: '/../../../../outside' },
        { name: 'via', type: 'link', linkname: 'esc/secret' },
        { name: 'f', content: 'f' },
        { name: 'under', type: 'link', linkname: 'f/x' },
      ]),
    ]);
    expect(ls(root)).toEqual(['d', 'esc', 'f']);
    expect(warnings).toHaveLength(6);
    expect(warnings.join('\n')).toMatch(/does not exist/);
    expect(warnings.join('\n')).toMatch(/is a directory/);
  });

  it('a hard link over its own target, or over another name of it, changes nothing', async () => {
    const r = await flattenLayers([
      await makeTar([
        { name: 'a', content: 'a' },
        { name: 'b', type: 'link', linkname: 'a' },
        { name: 'a', type: 'link', linkname: 'a' },
        { name: 'b', type: 'link', linkname: './a' },
      ]),
    ]);
    expect(r.warnings).toEqual([]);
    expect(r.tree.nameCount(must(r.root, 'a'))).toBe(2);
    expect(r.stats).toMatchObject({ files: 1, hardlinks: 1 });
    expectExactRefs(r);
  });
});

describe('whiteouts that try to leave the root', () => {
  it('.wh... and .wh.. are ignored and create nothing', async () => {
    const l1 = await makeTar([{ name: 'keep', content: 'k' }]);
    const { root, warnings } = await flattenLayers([
      l1,
      await makeTar([
        { name: '.wh...', content: '' },
        { name: 'sub/.wh..', content: '' },
      ]),
    ]);
    expect(ls(root)).toEqual(['keep']);
    expect(warnings).toHaveLength(2);
  });

  it('a/.wh.b with a a symlink to outside removes b inside the root only', async () => {
    const l1 = await makeTar([
      { name: 'b', content: 'root b' },
      { name: 'etc/passwd', content: 'pw' },
      { name: 'a', type: 'symlink', linkname: '../../..' },
      { name: 'abs', type: 'symlink', linkname: '/' },
    ]);
    const l2 = await makeTar([
      { name: 'a/.wh.b', content: '' },
      { name: 'abs/etc/.wh.passwd', content: '' },
      { name: '../../../.wh.outside', content: '' },
      { name: '../../.wh.l3', content: '' },
    ]);
    const { root } = await flattenLayers([l1, l2]);
    expect(paths(root)).toEqual(['a symlink → ../../..', 'abs symlink → /', 'etc dir']);
  });

  it('a whiteout of a symlink removes the symlink, not its target', async () => {
    const l1 = await makeTar([
      { name: 'data/file', content: 'f' },
      { name: 'ln', type: 'symlink', linkname: '/data' },
    ]);
    const { root } = await flattenLayers([l1, await makeTar([{ name: '.wh.ln', content: '' }])]);
    expect(at(root, 'ln')).toBeUndefined();
    expect(await text(root, 'data/file')).toBe('f');
  });

  it('an opaque marker under a symlink applies to the directory it resolves to inside the root', async () => {
    const l1 = await makeTar([
      { name: 'outside/mine', content: 'in root' },
      { name: 's', type: 'symlink', linkname: '/../../../../outside' },
    ]);
    const { root } = await flattenLayers([l1, await makeTar([{ name: 's/.wh..wh..opq', content: '' }])]);
    expect(ls(root, 'outside')).toEqual([]);
  });
});

describe('entries no file system can hold', () => {
  it('a symlink loop on the path is a badImage error', async () => {
    await expectBadImage(
      [
        await makeTar([
          { name: 'loop1', type: 'symlink', linkname: 'loop2' },
          { name: 'loop2', type: 'symlink', linkname: 'loop1' },
          { name: 'loop1/x', content: 'x' },
        ]),
      ],
      /too many levels of symbolic links/,
    );
  });

  it('a self-referencing symlink used as a directory is a badImage error; 40 hops are fine, 41 are not', async () => {
    await expectBadImage(
      [
        await makeTar([
          { name: 'self', type: 'symlink', linkname: 'self/x' },
          { name: 'self/y', content: 'y' },
        ]),
      ],
      /symbolic links/,
    );
    const chain = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        name: `l${i}`,
        type: 'symlink' as const,
        linkname: i === n - 1 ? 'real' : `l${i + 1}`,
      }));
    const ok = await flattenLayers([
      await makeTar([{ name: 'real/', type: 'directory' }, ...chain(40), { name: 'l0/f', content: 'f' }]),
    ]);
    expect(await text(ok.root, 'real/f')).toBe('f');
    await expectBadImage(
      [await makeTar([{ name: 'real/', type: 'directory' }, ...chain(41), { name: 'l0/f', content: 'f' }])],
      /too many levels/,
    );
  });

  it('a 300-byte name component is a badImage error, also when it comes from a symlink target', async () => {
    await expectBadImage([await makeTar([{ name: `dir/${'z'.repeat(300)}`, content: 'z' }])], /300 bytes.*at most 255/);
    await expectBadImage(
      [
        await makeTar([
          { name: 's', type: 'symlink', linkname: `${'z'.repeat(256)}/d` },
          { name: 's/f', content: 'f' },
        ]),
      ],
      /256 bytes.*at most 255/,
    );
  });

  it('a NUL in a PAX path is a badImage error', async () => {
    await expectBadImage([await makeTar([{ name: 'x', content: 'x', pax: { path: 'a\0b' } }])], /NUL/);
  });

  it('a path of 4096 bytes, or one that resolves to 4096 bytes through a symlink, is a badImage error', async () => {
    const comp = 'p'.repeat(200);
    const long = Array.from({ length: 20 }, () => comp).join('/'); // 4019 bytes
    await expectBadImage(
      [await makeTar([{ name: `${long}/${'q'.repeat(76)}`, content: 'x' }])],
      /4096 bytes long; Linux allows at most 4095/,
    );
    // The entry's own path is short; what it resolves to is not.
    const deep = Array.from({ length: 19 }, () => comp).join('/');
    await expectBadImage(
      [
        await makeTar([
          { name: `${deep}/`, type: 'directory' },
          { name: 's', type: 'symlink', linkname: `/${deep}` },
          { name: `s/${'r'.repeat(255)}/${'f'.repeat(20)}`, content: 'x' },
        ]),
      ],
      /resolves to .* Linux allows at most 4095/,
    );
  });

  it('uid, gid or device numbers out of range are badImage errors, not internal ones', async () => {
    await expectBadImage([await makeTar([{ name: 'u', content: 'x', pax: { uid: '4294967295' } }])], /uid 4294967295/);
    await expectBadImage(
      [await makeTar([{ name: 'g', content: 'x', pax: { gid: '99999999999' } }])],
      /gid 99999999999/,
    );
    const neg = rawHeader({ name: 'n', size: 0 });
    neg.fill(0xff, 108, 116); // base-256 -1
    neg.fill(0x20, 148, 156);
    let sum = 0;
    for (const c of neg) sum += c;
    neg.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    await expectBadImage([Buffer.concat([neg, TAR_END])], /uid -1/);
    await expectBadImage(
      [await makeTar([{ name: 'dev/x', type: 'block-device', devmajor: 4096, devminor: 0 }])],
      /4096:0/,
    );
  });

  it('a path below a regular file is skipped with a warning', async () => {
    const { root, warnings } = await flattenLayers([
      await makeTar([
        { name: 'f', content: 'file' },
        { name: 'f/x', content: 'x' },
      ]),
    ]);
    expect(warnings).toEqual([expect.stringMatching(/"f\/x": "\/f" is not a directory/)]);
    expect(await text(root, 'f')).toBe('file');
  });

  it('a symlink with an empty target, an unknown entry type, and xattrs Linux refuses are skipped with warnings', async () => {
    const unknown = Buffer.concat([
      rawHeader({ name: 'weird', typeflag: 'Z', size: 3 }),
      padTo512(Buffer.from('abc')),
      ustar('after', 0),
      TAR_END,
    ]);
    const r1 = await flattenLayers([unknown]);
    expect(ls(r1.root)).toEqual(['after']);
    expect(r1.warnings).toEqual([expect.stringMatching(/unsupported tar entry type 'Z'/)]);
    const r2 = await flattenLayers([
      await makeTar([
        {
          name: 'f',
          content: 'x',
          pax: {
            'SCHILY.xattr.bogus.x': '1',
            'SCHILY.xattr.user.': '2',
            'SCHILY.xattr.system.posix_acl_access': 'nope',
            'SCHILY.xattr.user.ok': '3',
            'SCHILY.xattr.system.posix_acl_default': '\x02\0\0\0',
          },
        },
      ]),
    ]);
    expect(must(r2.root, 'f').meta.xattrs).toEqual(new Map([['user.ok', Buffer.from('3')]]));
    expect(r2.warnings).toHaveLength(4);
    const r3 = await flattenLayers([Buffer.concat([rawHeader({ name: 'empty', typeflag: '2' }), TAR_END])]);
    expect(r3.root.entries.size).toBe(0);
    expect(r3.warnings).toEqual([expect.stringMatching(/target is empty or invalid/)]);
  });
});

describe('missing parents and reproducibility', () => {
  it('directories made for a path through a dangling symlink are made where it points, at the epoch', async () => {
    const { root } = await flattenLayers([
      await makeTar([
        { name: 'bin', type: 'symlink', linkname: 'usr/bin' },
        { name: 'bin/ls', content: 'ls' },
      ]),
    ]);
    expect(await text(root, 'usr/bin/ls')).toBe('ls');
    expect(must(root, 'usr/bin').meta).toMatchObject({ mode: 0o755, uid: 0, gid: 0, mtime: EPOCH });
  });
});
