import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { detectOs } from '../../src/guest/detect.js';
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
  return { ref: 'x', id: 'sha256:x', config: {}, layers: layers.map((b, i) => ({ name: `l${i}`, open: async () => Readable.from([b]) })) };
}

describe('detectOs', () => {
  it('follows Debian\'s etc/os-release symlink to usr/lib/os-release, across gzip layers', async () => {
    const img = image([
      await layer([{ name: 'usr/lib/os-release', body: 'ID=debian\nVERSION_ID="12"\n' }, { name: 'etc/os-release', type: 'symlink', linkname: '../usr/lib/os-release' }], true),
    ]);
    expect(await detectOs(img)).toMatchObject({ id: 'debian', versionId: '12' });
  });
  it('takes the upper layer and honours whiteouts', async () => {
    const lower = await layer([{ name: 'etc/os-release', body: 'ID=debian\n' }]);
    expect((await detectOs(image([lower, await layer([{ name: 'etc/os-release', body: 'ID=alpine\n' }])])))?.id).toBe('alpine');
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
