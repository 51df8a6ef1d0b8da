import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { detectOs, parseOsRelease } from '../../src/guest/detect.js';
import type { SourceImage } from '../../src/source/image.js';

type E = { name: string; type?: 'file' | 'symlink'; body?: string; linkname?: string };

async function layer(entries: E[], gzip = false): Promise<Buffer> {
  const p = tar.pack();
  for (const e of entries) p.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname }, e.body ?? '');
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  const b = Buffer.concat(chunks);
  return gzip ? gzipSync(b) : b;
}

function image(layers: Buffer[]): SourceImage {
  return {
    ref: 'x',
    id: 'sha256:x',
    config: {},
    layers: layers.map((b, i) => ({ name: `l${i}`, open: async () => Readable.from([b]) })),
  };
}

describe('detectOs', () => {
  it("follows Debian's etc/os-release symlink to usr/lib/os-release, across gzip layers", async () => {
    const img = image([
      await layer(
        [
          { name: 'usr/lib/os-release', body: 'ID=debian\nVERSION_ID="12"\n' },
          { name: 'etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release' },
        ],
        true,
      ),
    ]);
    expect(await detectOs(img)).toMatchObject({ id: 'debian', versionId: '12' });
  });
  it('takes the upper layer and honours whiteouts', async () => {
    const lower = await layer([{ name: 'etc/os-release', body: 'ID=debian\n' }]);
    expect((await detectOs(image([lower, await layer([{ name: 'etc/os-release', body: 'ID=alpine\n' }])])))?.id).toBe(
      'alpine',
    );
    expect(await detectOs(image([lower, await layer([{ name: 'etc/.wh.os-release' }])]))).toBeUndefined();
    expect(await detectOs(image([lower, await layer([{ name: 'etc/.wh..wh..opq' }])]))).toBeUndefined();
  });
  it('finds nothing in a scratch image', async () => {
    expect(await detectOs(image([await layer([{ name: 'app', body: 'ELF' }])]))).toBeUndefined();
  });
  it('reports a corrupt layer as a bad image', async () => {
    const good = await layer([{ name: 'etc/os-release', body: 'ID=debian\n' }]);
    await expect(detectOs(image([good.subarray(0, 700)]))).rejects.toThrow(/corrupt/);
  });
});

describe('detectOs: os-release reached through links', () => {
  const usrLib = { name: 'usr/lib/os-release', body: 'ID=fedora\nVERSION_ID=41\n' };
  it('follows an absolute symlink, re-rooted in the image', async () => {
    const img = image([
      await layer([usrLib, { name: 'etc/os-release', type: 'symlink', linkname: '/usr/lib/os-release' }]),
    ]);
    expect(await detectOs(img)).toMatchObject({ id: 'fedora', versionId: '41' });
  });
  it('follows a symlink to a file that is not one of the two standard paths', async () => {
    const img = image([
      await layer([
        { name: 'usr/lib/os-release', body: 'ID=debian\n' },
        { name: 'usr/lib/os-release.d/custom-os-release', body: 'ID=alpine\nVERSION_ID=3.20.1\n' },
        { name: 'etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release.d/custom-os-release' },
      ]),
    ]);
    expect(await detectOs(img)).toMatchObject({ id: 'alpine', versionId: '3.20.1' });
  });
  it('follows symlinked directories on the way (merged /usr)', async () => {
    const img = image([
      await layer([
        usrLib,
        { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
        { name: 'etc/os-release', type: 'symlink', linkname: '../lib/os-release' },
      ]),
    ]);
    expect((await detectOs(img))?.id).toBe('fedora');
  });
  it('a link climbing above the root stays inside the image', async () => {
    const img = image([
      await layer([usrLib, { name: 'etc/os-release', type: 'symlink', linkname: '../../../../usr/lib/os-release' }]),
    ]);
    expect((await detectOs(img))?.id).toBe('fedora');
  });
  it('reads a hard link like the file it names', async () => {
    const p = tar.pack();
    p.entry({ name: 'usr/lib/os-release' }, 'ID=ubuntu\nVERSION_ID="24.04"\n');
    p.entry({ name: 'etc/os-release', type: 'link', linkname: 'usr/lib/os-release' });
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p) chunks.push(c as Buffer);
    expect(await detectOs(image([Buffer.concat(chunks)]))).toMatchObject({ id: 'ubuntu', versionId: '24.04' });
  });
  it('a symlink loop or a dangling link falls back to /usr/lib/os-release', async () => {
    const loop = await layer([usrLib, { name: 'etc/os-release', type: 'symlink', linkname: 'os-release' }]);
    expect((await detectOs(image([loop])))?.id).toBe('fedora');
    const dangling = await layer([{ name: 'etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release' }]);
    expect(await detectOs(image([dangling]))).toBeUndefined();
  });
  it('a link to a file an upper layer deleted finds nothing', async () => {
    const lower = await layer([usrLib, { name: 'etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release' }]);
    expect(await detectOs(image([lower, await layer([{ name: 'usr/lib/.wh.os-release' }])]))).toBeUndefined();
    expect(await detectOs(image([lower, await layer([{ name: 'usr/.wh..wh..opq' }])]))).toBeUndefined();
  });
  it('a whiteout hides only lower layers: an os-release its own layer wrote, before or after it, stays', async () => {
    const lower = await layer([{ name: 'etc/os-release', body: 'ID=debian\n' }]);
    const after = await layer([{ name: 'etc/os-release', body: 'ID=alpine\n' }, { name: 'etc/.wh.os-release' }]);
    expect((await detectOs(image([lower, after])))?.id).toBe('alpine');
    const opaque = await layer([{ name: 'etc/os-release', body: 'ID=arch\n' }, { name: 'etc/.wh..wh..opq' }]);
    expect((await detectOs(image([lower, opaque])))?.id).toBe('arch');
  });
  it('a whiteout under a symlinked directory removes the file it leads to', async () => {
    const lower = await layer([
      usrLib,
      { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
      { name: 'etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release' },
    ]);
    expect(await detectOs(image([lower, await layer([{ name: 'lib/.wh.os-release' }])]))).toBeUndefined();
  });
  it('many other files named like os-release do not hide the real one', async () => {
    const decoys = Array.from({ length: 300 }, (_, i) => ({
      name: `etc/os-release.d/os-release-${i}`,
      body: 'ID=decoy\n',
    }));
    expect((await detectOs(image([await layer([...decoys, usrLib])])))?.id).toBe('fedora');
  });
  it('ignores an os-release too large to be one', async () => {
    const img = image([
      await layer([{ name: 'etc/os-release', body: `ID=debian\n${'#'.repeat(70 * 1024)}\n` }, usrLib]),
    ]);
    expect((await detectOs(img))?.id).toBe('fedora');
  });
});

describe('parseOsRelease', () => {
  it('reads quoted values, escapes, ID_LIKE lists and the Ubuntu codename, lower-casing identifiers', () => {
    const r = parseOsRelease(
      'ID="LinuxMint"\nID_LIKE="ubuntu Debian"\nVERSION_ID="21.3"\nUBUNTU_CODENAME=jammy\nPRETTY_NAME="Linux \\"Mint\\" 21.3"\n# comment\nJUNK\n',
    );
    expect(r).toEqual({
      id: 'linuxmint',
      idLike: ['ubuntu', 'debian'],
      versionId: '21.3',
      versionCodename: undefined,
      ubuntuCodename: 'jammy',
      prettyName: 'Linux "Mint" 21.3',
    });
  });
  it('gives "linux" for a file without ID, as os-release(5) says', () => {
    expect(parseOsRelease('NAME=x\n').id).toBe('linux');
  });
});
