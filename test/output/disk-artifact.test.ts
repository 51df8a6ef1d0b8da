// A disk's OCI artifact as data: an image manifest with img2vm's artifactType, the record as its config, the disk as its one titled layer, the key's fields as annotations; and cache repositories are repositories, not tags.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cacheRepository, diskArtifact, DISK_ARTIFACT_TYPE, DISK_CONFIG_TYPE } from '../../src/output/disk-artifact.js';
import { parseConvertOptions } from '../../src/core/options.js';
import {
  diskKey,
  diskKeyOptions,
  parseDiskRecord,
  type DiskKeyFields,
  type DiskRecord,
} from '../../src/store/index.js';

const H = (c: string) => c.repeat(64);
const fields: DiskKeyFields = {
  img2vm: { version: '0.1.0', code: H('a') },
  image: { config: `sha256:${H('b')}`, manifest: null, platform: 'linux/amd64' },
  guest: { strategy: 'img2vm', build: null },
  kernel: `sha256:${H('d')}`,
  init: H('e'),
  loaders: { 'grub-bios': H('f') },
  options: diskKeyOptions(parseConvertOptions({ image: 'x', seed: 's', password: 'secret' }), {
    format: 'qcow2',
    hostname: 'x',
    sourceDateEpoch: null,
  }),
};
const rec: DiskRecord = {
  format: 1,
  key: diskKey(fields),
  fields,
  bytes: 1234,
  sha256: H('9'),
  createdAt: '2024-01-01T00:00:00.000Z',
  meta: null,
};

describe('the disk artifact', () => {
  it('is a manifest with the artifactType, the record as config and the disk as its one layer', () => {
    const a = diskArtifact(rec, 1700000000);
    const m = JSON.parse(a.manifest.toString('utf8')) as {
      mediaType: string;
      artifactType: string;
      config: { mediaType: string; digest: string; size: number };
      layers: { mediaType: string; digest: string; size: number; annotations: Record<string, string> }[];
      annotations: Record<string, string>;
    };
    expect(m.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(m.artifactType).toBe(DISK_ARTIFACT_TYPE);
    expect(m.config).toEqual({
      mediaType: DISK_CONFIG_TYPE,
      digest: `sha256:${createHash('sha256').update(a.config).digest('hex')}`,
      size: a.config.length,
    });
    expect(parseDiskRecord(JSON.parse(a.config.toString('utf8')))).toEqual(rec);
    expect(m.layers).toEqual([
      {
        mediaType: 'application/vnd.img2vm.disk.layer.v1.qcow2',
        digest: `sha256:${H('9')}`,
        size: 1234,
        annotations: { 'org.opencontainers.image.title': 'disk.qcow2' },
      },
    ]);
    expect(m.annotations).toMatchObject({
      'org.img2vm.disk.key': rec.key,
      'org.img2vm.disk.image.config': `sha256:${H('b')}`,
      'org.opencontainers.image.created': '2023-11-14T22:13:20.000Z',
    });
    // The manifest is the same bytes for the same disk: a second push changes no tag.
    expect(diskArtifact(rec, 1700000000).manifest.equals(a.manifest)).toBe(true);
  });

  it('takes a repository for the cache, never a tag or digest', () => {
    expect(cacheRepository('127.0.0.1:5000/team/cache', '--cache-to')).toEqual({
      domain: '127.0.0.1:5000',
      path: 'team/cache',
    });
    expect(() => cacheRepository('127.0.0.1:5000/team/cache:1', '--cache-to')).toThrow(/without a tag/);
    expect(() => cacheRepository(`127.0.0.1:5000/team/cache@sha256:${H('1')}`, '--cache-from')).toThrow(
      /without a tag/,
    );
  });
});
