// Hostile layers: nothing outside the root may change, and entries land inside the root where a safe reading exists.
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { applyLayers, makeTar, sandbox, snapshotOutside, type Applied, type Sandbox } from './helpers.js';

let sb: Sandbox;
let before: string[];
beforeEach(() => {
  sb = sandbox();
  before = snapshotOutside(sb);
});
afterEach(() => {
  try {
    // The invariant every case here shares: the sandbox around the root is byte-for-byte unchanged.
    expect(snapshotOutside(sb)).toEqual(before);
  } finally {
    sb.cleanup();
  }
});

const p = (...parts: string[]): string => join(sb.root, ...parts);
const uniq = `img2vm-pwned-${randomBytes(6).toString('hex')}`;

async function expectBadImage(layers: Buffer[], re: RegExp): Promise<void> {
  const e = await applyLayers(sb.root, layers).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(Img2vmError);
  expect((e as Img2vmError).kind).toBe('badImage');
  expect((e as Img2vmError).message).toMatch(re);
}

describe('paths that try to leave the root', () => {
  it('../../etc/x and /abs/x are clamped to the root', async () => {
    await applyLayers(sb.root, [
      await makeTar([
        { name: '../../etc/x', content: 'dotdot' },
        { name: '../../../../../../../../b', content: 'deep dotdot' },
        { name: `/${uniq}/x`, content: 'abs' },
        { name: 'a/../../../c', content: 'mixed' },
      ]),
    ]);
    expect(readFileSync(p('etc/x'), 'utf8')).toBe('dotdot');
    expect(readFileSync(p('b'), 'utf8')).toBe('deep dotdot');
    expect(readFileSync(p(uniq, 'x'), 'utf8')).toBe('abs');
    expect(readFileSync(p('c'), 'utf8')).toBe('mixed');
    expect(existsSync(`/${uniq}`)).toBe(false);
  });

  it('a symlink to / or ../../.. is followed inside the root', async () => {
    const { warnings } = await applyLayers(sb.root, [
      await makeTar([
        { name: 'evil', type: 'symlink', linkname: '/' },
        { name: `evil/tmp/${uniq}`, content: 'pwned?' },
        { name: 'evil2', type: 'symlink', linkname: '../../..' },
        { name: 'evil2/etc/passwd', content: 'inside' },
        { name: 'evil3', type: 'symlink', linkname: '/../../../../outside' },
        { name: 'evil3/secret', content: 'inside too' },
      ]),
    ]);
    expect(warnings).toEqual([]);
    expect(readFileSync(p('tmp', uniq), 'utf8')).toBe('pwned?');
    expect(existsSync(`/tmp/${uniq}`)).toBe(false);
    expect(readFileSync(p('etc/passwd'), 'utf8')).toBe('inside');
    expect(readFileSync(p('outside/secret'), 'utf8')).toBe('inside too');
    expect(readlinkSync(p('evil'))).toBe('/');
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
    await applyLayers(sb.root, [l1, l2]);
    expect(readFileSync(p('real/f'), 'utf8')).toBe('via alias');
    expect(lstatSync(p('alias')).isSymbolicLink()).toBe(true);
    expect(readFileSync(p('g'), 'utf8')).toBe('via up');
  });

  it('the final component is never followed: a file replaces a symlink to outside', async () => {
    const l1 = await makeTar([
      { name: 'victim', type: 'symlink', linkname: '../../../../outside/secret' },
      { name: 'vdir', type: 'symlink', linkname: '/../../../../outside' },
    ]);
    const l2 = await makeTar([
      { name: 'victim', content: 'overwrite?' },
      { name: 'vdir', type: 'directory', mode: 0o777 },
    ]);
    await applyLayers(sb.root, [l1, l2]);
    expect(lstatSync(p('victim')).isFile()).toBe(true);
    expect(readFileSync(p('victim'), 'utf8')).toBe('overwrite?');
    expect(lstatSync(p('vdir')).isDirectory()).toBe(true);
  });

  it('devices, fifos and xattrs under an escaping symlink land inside the root', async () => {
    await applyLayers(sb.root, [
      await makeTar([
        { name: 'evil', type: 'symlink', linkname: '/../..' },
        { name: 'evil/dev/nul2', type: 'character-device', devmajor: 1, devminor: 3 },
        { name: 'evil/fifo', type: 'fifo' },
        { name: 'evil/attr', content: 'a', pax: { 'SCHILY.xattr.user.x': '1' } },
      ]),
    ]);
    expect(lstatSync(p('dev/nul2')).isCharacterDevice()).toBe(true);
    expect(lstatSync(p('fifo')).isFIFO()).toBe(true);
    expect(readFileSync(p('attr'), 'utf8')).toBe('a');
  });

  it('a directory entry ../ only touches the root', async () => {
    const { warnings } = await applyLayers(sb.root, [
      await makeTar([
        { name: '../', type: 'directory', mode: 0o700 },
        { name: '../../..', type: 'directory', mode: 0o700 },
        { name: '..', content: 'a file cannot replace the root' },
        { name: 'x/..', type: 'symlink', linkname: '/' },
      ]),
    ]);
    expect(lstatSync(sb.root).mode & 0o7777).toBe(0o700);
    expect(lstatSync(sb.root).isDirectory()).toBe(true);
    expect(warnings).toHaveLength(2);
  });
});

describe('hardlinks', () => {
  it('to ../../etc/passwd links the root’s own file, never the one outside', async () => {
    const { warnings } = await applyLayers(sb.root, [
      await makeTar([
        { name: 'etc/passwd', content: 'root:x:0:0\n' },
        { name: 'pw', type: 'link', linkname: '../../etc/passwd' },
        { name: 'pw2', type: 'link', linkname: '/../../../etc/passwd' },
      ]),
    ]);
    expect(warnings).toEqual([]);
    const ino = lstatSync(p('etc/passwd')).ino;
    expect(lstatSync(p('pw')).ino).toBe(ino);
    expect(lstatSync(p('pw2')).ino).toBe(ino);
  });

  it('to a target that does not exist inside the root (but does outside), or to a directory, is skipped with a warning', async () => {
    const { warnings } = await applyLayers(sb.root, [
      await makeTar([
        { name: 'd/', type: 'directory' },
        { name: 'pw', type: 'link', linkname: '../../etc/passwd' },
        { name: 'sec', type: 'link', linkname: '../../../../outside/secret' },
        { name: 'missing', type: 'link', linkname: 'no/such/file' },
        { name: 'dirlink', type: 'link', linkname: 'd' },
        { name: 'rootlink', type: 'link', linkname: '..' },
        { name: 'esc', type: 'symlink', linkname: '/../../../../outside' },
        { name: 'via', type: 'link', linkname: 'esc/secret' },
      ]),
    ]);
    for (const n of ['pw', 'sec', 'missing', 'dirlink', 'rootlink', 'via']) expect(existsSync(p(n))).toBe(false);
    expect(warnings).toHaveLength(6);
    expect(warnings.join('\n')).toMatch(/does not exist/);
    expect(warnings.join('\n')).toMatch(/is a directory/);
  });

  it('to a symlink links the symlink itself', async () => {
    await applyLayers(sb.root, [
      await makeTar([
        { name: 'out', type: 'symlink', linkname: '../../../../outside/secret' },
        { name: 'hl', type: 'link', linkname: 'out' },
      ]),
    ]);
    expect(lstatSync(p('hl')).isSymbolicLink()).toBe(true);
    expect(lstatSync(p('hl')).ino).toBe(lstatSync(p('out')).ino);
  });
});

describe('whiteouts that try to leave the root', () => {
  it('.wh... and .wh.. are ignored', async () => {
    const l1 = await makeTar([{ name: 'keep', content: 'k' }]);
    const { warnings } = await applyLayers(sb.root, [
      l1,
      await makeTar([
        { name: '.wh...', content: '' },
        { name: 'sub/.wh..', content: '' },
      ]),
    ]);
    // A whiteout never creates anything, not even its parent directory.
    expect(readdirSync(sb.root).sort()).toEqual(['keep']);
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
    await applyLayers(sb.root, [l1, l2]);
    expect(existsSync(p('b'))).toBe(false);
    expect(existsSync(p('etc/passwd'))).toBe(false);
    expect(lstatSync(p('a')).isSymbolicLink()).toBe(true);
  });

  it('a whiteout of a symlink removes the symlink, not its target', async () => {
    const l1 = await makeTar([
      { name: 'data/file', content: 'f' },
      { name: 'ln', type: 'symlink', linkname: '/data' },
    ]);
    await applyLayers(sb.root, [l1, await makeTar([{ name: '.wh.ln', content: '' }])]);
    expect(existsSync(p('ln'))).toBe(false);
    expect(readFileSync(p('data/file'), 'utf8')).toBe('f');
  });

  it('an opaque marker under a symlink to outside stays inside the root', async () => {
    const l1 = await makeTar([
      { name: 'outside/mine', content: 'in root' },
      { name: 's', type: 'symlink', linkname: '/../../../../outside' },
    ]);
    await applyLayers(sb.root, [l1, await makeTar([{ name: 's/.wh..wh..opq', content: '' }])]);
    expect(readdirSync(p('outside'))).toEqual([]);
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

  it('a self-referencing symlink used as a directory is a badImage error', async () => {
    await expectBadImage(
      [
        await makeTar([
          { name: 'self', type: 'symlink', linkname: 'self/x' },
          { name: 'self/y', content: 'y' },
        ]),
      ],
      /symbolic links/,
    );
  });

  it('a 300-byte name component is a badImage error', async () => {
    await expectBadImage([await makeTar([{ name: `dir/${'z'.repeat(300)}`, content: 'z' }])], /300 bytes.*at most 255/);
  });

  it('a path below a regular file is skipped with a warning', async () => {
    const { warnings }: Applied = await applyLayers(sb.root, [
      await makeTar([
        { name: 'f', content: 'file' },
        { name: 'f/x', content: 'x' },
      ]),
    ]);
    expect(warnings).toHaveLength(1);
    expect(readFileSync(p('f'), 'utf8')).toBe('file');
  });
});
