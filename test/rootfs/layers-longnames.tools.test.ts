// Long names as GNU tar and Python's tarfile write them (the ustar name field cut at 100 bytes), and whiteouts of the longest names.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ByteSource, TarReader, type TarHeader } from '../../src/rootfs/tar.js';
import { applyLayers, gnuEntry, makeTar, paxEntry, rawHeader, sandbox, TAR_END } from './helpers.js';
import { at, bytes, flattenLayers, must, paths } from './layers-helpers.js';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

async function headers(tar: Buffer): Promise<TarHeader[]> {
  const r = new TarReader(new ByteSource(Readable.from([tar])[Symbol.asyncIterator]()));
  const out: TarHeader[] = [];
  for (let h = await r.next(); h; h = await r.next()) out.push(h);
  return out;
}

// 99 bytes, then '/' as byte 100, so a writer that cuts the name at 100 bytes leaves a trailing slash.
const DIR = `${'d'.repeat(49)}/${'e'.repeat(49)}`;
const EMPTY = `${DIR}/empty-file`;
const FULL = `${DIR}/file-with-content`;
const CONTENT = Buffer.from('the bytes of a file whose name is longer than 100 bytes\n');

describe('a path longer than 100 bytes with "/" as byte 100 stays a regular file', () => {
  it('the writers really leave a trailing slash in the 100-byte name field', () => {
    expect(EMPTY.slice(0, 100)).toBe(`${DIR}/`);
    expect(FULL.slice(0, 100).endsWith('/')).toBe(true);
  });

  for (const [format, entry] of [
    ['PAX (Python tarfile, GNU tar --format=posix)', paxEntry],
    ['GNU long name (GNU tar --format=gnu, tarfile GNU_FORMAT)', gnuEntry],
  ] as const) {
    it(`${format}: the reader gives typeflag '0' with the full path as a file`, async () => {
      const hs = await headers(Buffer.concat([entry(EMPTY, Buffer.alloc(0)), entry(FULL, CONTENT), TAR_END]));
      expect(hs.map((h) => [h.path, h.type, h.size])).toEqual([
        [EMPTY, 'file', 0],
        [FULL, 'file', CONTENT.length],
      ]);
    });

    it(`${format}: the tree flattener makes regular files with their bytes`, async () => {
      const { root, warnings } = await flattenLayers([
        Buffer.concat([entry(EMPTY, Buffer.alloc(0)), entry(FULL, CONTENT), TAR_END]),
      ]);
      expect(warnings).toEqual([]);
      expect(must(root, EMPTY).kind).toBe('file');
      expect(await bytes(root, EMPTY)).toEqual(Buffer.alloc(0));
      expect(await bytes(root, FULL)).toEqual(CONTENT);
      expect(paths(root).filter((p) => p.endsWith(' dir'))).toEqual([`${DIR.split('/')[0]} dir`, `${DIR} dir`]);
    });

    it(`${format}: made real in a directory (the runc builder's bundle), they are regular files with their bytes`, async () => {
      const sb = sandbox();
      try {
        await applyLayers(sb.root, [Buffer.concat([entry(EMPTY, Buffer.alloc(0)), entry(FULL, CONTENT), TAR_END])]);
        expect(statSync(join(sb.root, EMPTY)).isFile()).toBe(true);
        expect(statSync(join(sb.root, EMPTY)).size).toBe(0);
        expect(readFileSync(join(sb.root, FULL))).toEqual(CONTENT);
      } finally {
        sb.cleanup();
      }
    });
  }

  it("the old trailing-slash rule still holds for V7 typeflag '\\0', judged on the final path", async () => {
    const hs = await headers(
      Buffer.concat([
        rawHeader({ name: 'v7dir/', typeflag: '\0' }),
        rawHeader({ name: 'v7file', typeflag: '\0' }),
        // Cut at 100 bytes the name ends in '/', the long name does not: a file.
        gnuEntry(EMPTY, Buffer.alloc(0), '\0'),
        // The long name itself ends in '/': a directory.
        paxEntry(`${DIR}/sub/`, Buffer.alloc(0), '\0'),
        // typeflag '0' is a regular file whatever the name (as Go's archive/tar, which reads docker layers).
        rawHeader({ name: 'zero/', typeflag: '0' }),
        TAR_END,
      ]),
    );
    expect(hs.map((h) => [h.path, h.type])).toEqual([
      ['v7dir/', 'dir'],
      ['v7file', 'file'],
      [EMPTY, 'file'],
      [`${DIR}/sub/`, 'dir'],
      ['zero/', 'file'],
    ]);
  });
});

describe('a whiteout of a name of 252 to 255 bytes', () => {
  const long = 'n'.repeat(255);
  const short = 's'.repeat(252);

  it('removes the file below (tree flattener); the 259-byte ".wh." component is judged by the name it hides', async () => {
    const lower = await makeTar([
      { name: `dir/${long}`, content: 'lower' },
      { name: `dir/${short}`, content: 'lower too' },
      { name: 'dir/keep', content: 'k' },
    ]);
    const upper = await makeTar([
      { name: `dir/.wh.${long}`, content: '' },
      { name: `dir/.wh.${short}`, content: '' },
    ]);
    const { root, warnings, stats } = await flattenLayers([lower, upper]);
    expect(warnings).toEqual([]);
    expect(at(root, `dir/${long}`)).toBeUndefined();
    expect(at(root, `dir/${short}`)).toBeUndefined();
    expect(paths(root)).toEqual(['dir dir', 'dir/keep file']);
    expect(stats.whiteouts).toBe(2);
  });

  it("removes the file below, made real in a directory (the runc builder's bundle); one hiding 256 bytes is ignored", async () => {
    const sb = sandbox();
    try {
      const lower = await makeTar([
        { name: `dir/${long}`, content: 'lower' },
        { name: 'dir/keep', content: 'k' },
      ]);
      const upper = await makeTar([
        { name: `dir/.wh.${long}`, content: '' },
        { name: `dir/.wh.${'m'.repeat(256)}`, content: '' },
      ]);
      const { warnings } = await applyLayers(sb.root, [lower, upper]);
      expect(warnings).toEqual([expect.stringMatching(/ignoring whiteout .*hides a name of 256 bytes/)]);
      expect(existsSync(join(sb.root, 'dir', long))).toBe(false);
      expect(existsSync(join(sb.root, 'dir', 'keep'))).toBe(true);
    } finally {
      sb.cleanup();
    }
  });

  it('a whiteout of the longest path (/ + 4094 bytes; the whiteout itself is 4098) removes it', async () => {
    const comp = 'p'.repeat(200);
    const deep = Array.from({ length: 20 }, () => comp).join('/'); // 4019 bytes
    const name = 'q'.repeat(4094 - deep.length - 1);
    const lower = await makeTar([
      { name: `${deep}/${name}`, content: 'x' },
      { name: `${deep}/keep`, content: 'k' },
    ]);
    const upper = await makeTar([{ name: `${deep}/.wh.${name}`, content: '' }]);
    const { root } = await flattenLayers([lower, upper]);
    expect(at(root, `${deep}/${name}`)).toBeUndefined();
    expect(at(root, `${deep}/keep`)?.kind).toBe('file');
  });

  it('a whiteout hiding a name over 255 bytes hides nothing (no such file can exist below): a warning, not a rejected image', async () => {
    const lower = await makeTar([{ name: 'dir/keep', content: 'k' }]);
    const upper = await makeTar([{ name: `dir/.wh.${'m'.repeat(256)}`, content: '' }]);
    const { root, warnings } = await flattenLayers([lower, upper]);
    expect(paths(root)).toEqual(['dir dir', 'dir/keep file']);
    expect(warnings).toEqual([expect.stringMatching(/ignoring whiteout .*hides a name of 256 bytes/)]);
  });
});
