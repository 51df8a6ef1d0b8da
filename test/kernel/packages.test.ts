// Packages indexes: streamed stanza by stanza across chunk boundaries, only wanted stanzas kept, every kept field validated.
import { describe, expect, it } from 'vitest';
import { PackagesError, parseDepends, scanPackages } from '../../src/kernel/packages.js';

const H = 'e9893e5295d0549b8852611f12a4b8b5f6cc4b8128dcc2086b9847793b904ab7';

const META = `Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.12.117+1)
Version: 6.12.117-1
Installed-Size: 13
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Provides: linux-latest-modules-6.12.117+deb13-cloud-amd64, virtualbox-guest-modules, wireguard-modules (= 1.0.0)
Depends: linux-image-6.12.117+deb13-cloud-amd64 (= 6.12.117-1)
Description: Linux for x86-64 cloud (meta-package)
Description-md5: 0d0b1f5b9d3d8a8f8d8b1c3f5f1e2e3a
Section: kernel
Priority: optional
Filename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.12.117-1_amd64.deb
Size: 1508
SHA256: ${H}`;

const IMAGE = `Package: linux-image-6.12.117+deb13-cloud-amd64
Source: linux-signed-amd64 (6.12.117+1)
Version: 6.12.117-1
Architecture: amd64
Depends: kmod, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Filename: pool/main/l/linux-signed-amd64/linux-image-6.12.117+deb13-cloud-amd64_6.12.117-1_amd64.deb
Size: 34671208
SHA256: ${H}`;

const OTHER = (i: number) =>
  `Package: zz-other-${i}\nVersion: 1\nArchitecture: amd64\nFilename: pool/x.deb\nSize: 1\nSHA256: ${H}`;

async function* chunked(text: string, size: number): AsyncGenerator<Buffer> {
  const b = Buffer.from(text);
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

const wantImages = (n: string) => n.startsWith('linux-image-');

describe('scanPackages', () => {
  const index = [OTHER(1), META, OTHER(2), IMAGE, OTHER(3)].join('\n\n') + '\n';

  it.each([1, 7, 64, 4096, 1 << 20])('finds the same stanzas whatever the chunk size (%i bytes)', async (size) => {
    const stats = { bytes: 0, stanzas: 0 };
    const got = await scanPackages(chunked(index, size), wantImages, stats);
    expect(got.map((p) => [p.package, p.version])).toEqual([
      ['linux-image-cloud-amd64', '6.12.117-1'],
      ['linux-image-6.12.117+deb13-cloud-amd64', '6.12.117-1'],
    ]);
    expect(stats).toEqual({ bytes: Buffer.byteLength(index), stanzas: 5 });
  });

  it('keeps the fields needed to fetch and follow a package', async () => {
    const [meta, image] = await scanPackages(chunked(index, 100), wantImages);
    expect(meta).toEqual({
      package: 'linux-image-cloud-amd64',
      version: '6.12.117-1',
      architecture: 'amd64',
      filename: 'pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.12.117-1_amd64.deb',
      size: 1508,
      sha256: H,
      depends: [[{ name: 'linux-image-6.12.117+deb13-cloud-amd64', relation: '=', version: '6.12.117-1' }]],
      source: 'linux-signed-amd64 (6.12.117+1)',
    });
    expect(image!.depends).toEqual([
      [{ name: 'kmod' }],
      [{ name: 'initramfs-tools', relation: '>=', version: '0.120+deb8u2' }, { name: 'linux-initramfs-tool' }],
    ]);
  });

  it('handles a last stanza without a final newline, extra blank lines, and a stanza not starting with Package', async () => {
    const text = `\n\n${OTHER(1)}\n\n\n\nVersion: 6.12.117-1\n${IMAGE.replace(/^Version: .*\n/m, '')}`;
    expect((await scanPackages(chunked(text, 13), wantImages)).map((p) => p.package)).toEqual([
      'linux-image-6.12.117+deb13-cloud-amd64',
    ]);
  });

  const hostile: [string, string, RegExp][] = [
    ['a wanted stanza without SHA256', META.replace(/^SHA256: .*$/m, ''), /no sha256 field/],
    ['an escaping Filename', META.replace(/^Filename: .*$/m, 'Filename: pool/../../../etc/x.deb'), /unsafe Filename/],
    ['an absolute Filename', META.replace(/^Filename: .*$/m, 'Filename: /etc/x.deb'), /unsafe Filename/],
    ['a non-numeric Size', META.replace(/^Size: .*$/m, 'Size: 1e9'), /invalid Size/],
    ['an invalid version', META.replace(/^Version: .*$/m, 'Version: latest'), /invalid version/],
    ['a malformed dependency', META.replace(/^Depends: .*$/m, 'Depends: linux-image-x (=)'), /malformed dependency/],
    ['a field given twice', `${META}\nSize: 1`, /appears twice/],
  ];
  it.each(hostile)('refuses %s', async (_, stanza, msg) => {
    await expect(scanPackages(chunked(`${stanza}\n`, 50), wantImages)).rejects.toThrow(PackagesError);
    await expect(scanPackages(chunked(`${stanza}\n`, 50), wantImages)).rejects.toThrow(msg);
  });

  it('does not validate stanzas it does not want', async () => {
    expect(await scanPackages(chunked('Package: zz\nSize: nonsense\n\n', 5), wantImages)).toEqual([]);
  });

  it('refuses a stanza that never ends, without holding more than a MiB of it', async () => {
    async function* endless(): AsyncGenerator<Buffer> {
      yield Buffer.from('Package: linux-image-x\nDescription: ');
      for (let i = 0; i < 64; i++) yield Buffer.alloc(64 << 10, 0x61);
    }
    await expect(scanPackages(endless(), wantImages)).rejects.toThrow(/longer than 1048576 bytes/);
  });
});

describe('parseDepends', () => {
  it('reads alternatives, relations (with the old < and > spellings), arch qualifiers and restrictions', () => {
    expect(parseDepends('a, b:any (>> 1.0) | c [amd64] <!nocheck>, d (< 2), e (> 3)')).toEqual([
      [{ name: 'a' }],
      [{ name: 'b', relation: '>>', version: '1.0' }, { name: 'c' }],
      [{ name: 'd', relation: '<=', version: '2' }],
      [{ name: 'e', relation: '>=', version: '3' }],
    ]);
    expect(parseDepends('')).toEqual([]);
    expect(
      parseDepends('linux-base-cloud-amd64 (= 7.2.13-1),\n linux-image-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)'),
    ).toHaveLength(2);
  });
});
