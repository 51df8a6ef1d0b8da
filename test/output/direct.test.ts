import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeContainerDiskArchive } from '../../src/output/containerdisk.js';
import {
  cloudHypervisorScript,
  firecrackerConfig,
  readFirecrackerConfig,
  rootfsArtifacts,
} from '../../src/output/rootfs.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-out-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

async function readTar(stream: NodeJS.ReadableStream) {
  const out = new Map<string, { header: tar.Header; body: Buffer }>();
  const ex = tar.extract();
  stream.pipe(ex);
  for await (const e of ex) {
    const parts: Buffer[] = [];
    for await (const c of e) parts.push(c as Buffer);
    out.set(e.header.name, { header: e.header, body: Buffer.concat(parts) });
  }
  return out;
}

describe('direct-kernel output', () => {
  it('names its companion files after the ext4', () => {
    expect(rootfsArtifacts('/o/vm.ext4', true)).toEqual({
      ext4: '/o/vm.ext4',
      kernel: '/o/vm.vmlinuz',
      vmlinux: '/o/vm.vmlinux',
      initrd: '/o/vm.initrd.img',
      firecracker: '/o/vm.firecracker.json',
      cloudHypervisor: '/o/vm.cloud-hypervisor.sh',
    });
  });
  it('writes a Firecracker config and a cloud-hypervisor command line that point at them', () => {
    const a = rootfsArtifacts('/o/vm.ext4', true);
    const fc = JSON.parse(firecrackerConfig(a, { mem: 512, cpus: 1, cmdline: 'quiet' }));
    expect(fc['boot-source']).toEqual({
      kernel_image_path: './vm.vmlinux',
      initrd_path: './vm.initrd.img',
      boot_args: 'root=/dev/vda rw console=ttyS0 reboot=k panic=1 pci=off quiet',
    });
    expect(fc.drives).toEqual([
      { drive_id: 'rootfs', path_on_host: './vm.ext4', is_root_device: true, is_read_only: false },
    ]);
    expect(fc['machine-config']).toEqual({ vcpu_count: 1, mem_size_mib: 512 });
    const ch = cloudHypervisorScript(a, { mem: 512, cpus: 1 });
    expect(ch).toContain("--kernel './vm.vmlinux'");
    expect(ch).toContain("--initramfs './vm.initrd.img'");
    expect(ch).toContain("--disk path='./vm.ext4'");
    expect(ch).toContain("--cmdline 'root=/dev/vda rw console=ttyS0'");
  });
});

describe('reading a Firecracker config back (img2vm test/run)', () => {
  it("round-trips what img2vm writes, with paths taken from the config's directory", async () => {
    const a = rootfsArtifacts(join(tmp, 'vm.ext4'), true);
    await writeFile(a.firecracker, firecrackerConfig(a, { mem: 768, cpus: 3 }));
    expect(await readFirecrackerConfig(a.firecracker)).toEqual({
      config: a.firecracker,
      kernel: a.vmlinux,
      initrd: a.initrd,
      cmdline: 'root=/dev/vda rw console=ttyS0 reboot=k panic=1 pci=off',
      drives: [{ path: a.ext4, readOnly: false }],
      memMiB: 768,
      cpus: 3,
    });
  });
  it('puts the root drive first and keeps absolute paths', async () => {
    const p = join(tmp, 'two.firecracker.json');
    await writeFile(
      p,
      JSON.stringify({
        'boot-source': { kernel_image_path: '/k/vmlinux', boot_args: 'console=ttyS0' },
        drives: [
          { drive_id: 'data', path_on_host: 'data.ext4', is_root_device: false, is_read_only: true },
          { drive_id: 'root', path_on_host: '/r/root.ext4', is_root_device: true },
        ],
      }),
    );
    const c = await readFirecrackerConfig(p);
    expect(c.kernel).toBe('/k/vmlinux');
    expect(c.initrd).toBeUndefined();
    expect(c.drives).toEqual([
      { path: '/r/root.ext4', readOnly: false },
      { path: join(tmp, 'data.ext4'), readOnly: true },
    ]);
  });
  it('refuses unreadable, malformed and rootless configs with a usage error naming the problem', async () => {
    const bad = async (name: string, text: string) => {
      const p = join(tmp, name);
      await writeFile(p, text);
      return readFirecrackerConfig(p);
    };
    await expect(readFirecrackerConfig(join(tmp, 'missing.firecracker.json'))).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/cannot read/),
    });
    await expect(bad('a.json', '{not json')).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/cannot read/),
    });
    await expect(bad('b.json', '{"drives": []}')).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/boot-source/),
    });
    await expect(
      bad(
        'c.json',
        JSON.stringify({
          'boot-source': { kernel_image_path: 'k' },
          drives: [{ drive_id: 'd', path_on_host: 'd', is_root_device: false }],
        }),
      ),
    ).rejects.toMatchObject({ kind: 'usage', message: expect.stringMatching(/no root drive/) });
  });
});

describe('containerDisk', () => {
  it('is an OCI layout archive whose layer holds /disk/disk.qcow2 owned by 107:107', async () => {
    const qcow2 = join(tmp, 'd.qcow2');
    const disk = Buffer.from('QFI\xfb fake qcow2 bytes'.repeat(100), 'latin1');
    await writeFile(qcow2, disk);
    const out = join(tmp, 'cd.tar');
    await writeContainerDiskArchive(qcow2, out, tmp, 0);
    const files = await readTar(createReadStream(out));
    expect(JSON.parse(files.get('oci-layout')!.body.toString())).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(files.get('index.json')!.body.toString());
    const blobOf = (d: string) => files.get(`blobs/sha256/${d.slice(7)}`)!.body;
    const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
    const manifestDesc = index.manifests[0];
    const manifest = JSON.parse(blobOf(manifestDesc.digest).toString());
    expect(sha(blobOf(manifestDesc.digest))).toBe(manifestDesc.digest);
    const layerBytes = blobOf(manifest.layers[0].digest);
    expect(sha(layerBytes)).toBe(manifest.layers[0].digest);
    expect(layerBytes.length).toBe(manifest.layers[0].size);
    const config = JSON.parse(blobOf(manifest.config.digest).toString());
    expect(config.rootfs.diff_ids).toEqual([manifest.layers[0].digest]);
    const { Readable } = await import('node:stream');
    const layer = await readTar(Readable.from([layerBytes]));
    expect(layer.get('disk/')!.header).toMatchObject({ uid: 107, gid: 107, type: 'directory' });
    expect(layer.get('disk/disk.qcow2')!.header).toMatchObject({ uid: 107, gid: 107, type: 'file' });
    expect(layer.get('disk/disk.qcow2')!.body.equals(disk)).toBe(true);
  });
});
