// The podman builder's command lines (exact), and the oci-archive it hands podman load, read back by the source module.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunContext } from '../../src/core/context.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { layerMediaType, writeOciArchive } from '../../src/build/oci-archive-out.js';
import {
  podmanBuildArgv,
  podmanExistsArgv,
  podmanInfoArgv,
  podmanLoadArgv,
  podmanSaveArgv,
} from '../../src/build/podman.js';
import { sha256 } from '../../src/source/digest.js';
import type { SourceImage } from '../../src/source/image.js';
import { openSource } from '../../src/source/index.js';
import { tarOf } from '../../fixtures/hostile/images.js';

describe('podman command lines', () => {
  it('build: host network, never a registry, one layer, labels, the context img2vm wrote', () => {
    expect(
      podmanBuildArgv({
        tag: 'localhost/img2vm-cache:0123',
        context: '/w/podman-ctx-1',
        labels: { 'org.img2vm.base': 'sha256:ab', 'org.img2vm.template': 'debian' },
      }),
    ).toEqual([
      'build',
      '--network',
      'host',
      '--pull=never',
      '--layers=false',
      '--format',
      'oci',
      '--label',
      'org.img2vm.base=sha256:ab',
      '--label',
      'org.img2vm.template=debian',
      '--file',
      '/w/podman-ctx-1/Dockerfile',
      '--tag',
      'localhost/img2vm-cache:0123',
      '/w/podman-ctx-1',
    ]);
  });

  it("build for another architecture's image: --platform, so its steps run under the binfmt_misc emulator", () => {
    const argv = podmanBuildArgv({
      tag: 'localhost/img2vm-cache:0123',
      context: '/w/podman-ctx-1',
      labels: {},
      platform: 'linux/arm64',
    });
    expect(argv.slice(0, 9)).toEqual([
      'build',
      '--network',
      'host',
      '--pull=never',
      '--layers=false',
      '--format',
      'oci',
      '--platform',
      'linux/arm64',
    ]);
    expect(argv.slice(9)).toEqual([
      '--file',
      '/w/podman-ctx-1/Dockerfile',
      '--tag',
      'localhost/img2vm-cache:0123',
      '/w/podman-ctx-1',
    ]);
  });

  it('save uncompressed as an oci-archive; load, exists, info, rm', () => {
    expect(podmanSaveArgv('localhost/img2vm-cache:0123', '/w/out/image.tar')).toEqual([
      'save',
      '--uncompressed',
      '--format',
      'oci-archive',
      '--output',
      '/w/out/image.tar',
      'localhost/img2vm-cache:0123',
    ]);
    expect(podmanLoadArgv('/w/base.tar')).toEqual(['load', '--quiet', '--input', '/w/base.tar']);
    expect(podmanExistsArgv('sha256:ab')).toEqual(['image', 'exists', 'sha256:ab']);
    expect(podmanInfoArgv()).toEqual(['info', '--format', 'json']);
  });
});

describe('layerMediaType', () => {
  it("maps docker's types to OCI's, and sniffs a blob the source names no type for", () => {
    expect(layerMediaType('application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe(
      'application/vnd.oci.image.layer.v1.tar+gzip',
    );
    expect(layerMediaType('application/vnd.oci.image.layer.v1.tar+zstd')).toBe(
      'application/vnd.oci.image.layer.v1.tar+zstd',
    );
    expect(layerMediaType('application/vnd.oci.image.layer.v1.tar')).toBe('application/vnd.oci.image.layer.v1.tar');
    expect(layerMediaType(undefined, Buffer.from([0x1f, 0x8b, 8, 0]))).toBe(
      'application/vnd.oci.image.layer.v1.tar+gzip',
    );
    expect(layerMediaType(undefined, Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe(
      'application/vnd.oci.image.layer.v1.tar+zstd',
    );
    expect(layerMediaType(undefined, Buffer.from('usr/'))).toBe('application/vnd.oci.image.layer.v1.tar');
  });
});

describe('writeOciArchive', () => {
  let dir: string;
  let ctx: RunContext;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'img2vm-ociout-'));
    ctx = {
      work: dir,
      signal: new AbortController().signal,
      sink: () => {},
      scope: new Scope(),
      random: createRandom('t'),
    };
  });
  afterAll(async () => {
    await ctx.scope.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the config bytes (so the id), and every layer whether or not the source knew its digest', async () => {
    const plain = await tarOf({ 'a.txt': 'one' });
    const zipped = gzipSync(await tarOf({ 'b.txt': 'two' }));
    const configBytes = Buffer.from(
      JSON.stringify(
        {
          architecture: 'amd64',
          os: 'linux',
          config: { Env: ['A=1'] },
          rootfs: { type: 'layers', diff_ids: [sha256(plain), sha256(await tarOf({ 'b.txt': 'two' }))] },
        },
        null,
        1,
      ),
    );
    const img: SourceImage = {
      ref: 'test',
      id: sha256(configBytes),
      config: JSON.parse(configBytes.toString()),
      configBytes,
      layers: [
        {
          name: 'known',
          digest: sha256(plain),
          size: plain.length,
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          open: async () => Readable.from([plain]),
        },
        { name: 'unknown', open: async () => Readable.from([zipped]) },
      ],
    };
    const file = join(dir, 'out.tar');
    expect(await writeOciArchive(img, file, 'img2vm-source:0123', dir, ctx.signal)).toBe(img.id);
    const back = await openSource(`oci-archive:${file}:img2vm-source:0123`, ctx);
    expect(back.id).toBe(img.id);
    expect(back.configBytes).toEqual(configBytes);
    expect(back.layers.map((l) => [l.digest, l.size, l.mediaType])).toEqual([
      [sha256(plain), plain.length, 'application/vnd.oci.image.layer.v1.tar'],
      [sha256(zipped), zipped.length, 'application/vnd.oci.image.layer.v1.tar+gzip'],
    ]);
  });
});
