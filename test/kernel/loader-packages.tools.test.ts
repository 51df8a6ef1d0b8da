// Boot-loader files for another architecture (GRUB's arm64-efi modules) from a fake signed arm64 mirror on
// 127.0.0.1: verified and unpacked once, only the plain files of the one directory kept, and refused (nothing
// cached) when the package is not the one the signed index describes.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeTestKey, type TestKey } from '../../fixtures/debian-mirror/gpg.js';
import { arOf, xz } from '../../fixtures/debian-mirror/kernel.js';
import { serveMirror, writeMirror, type MirrorServer, type MirrorSuite } from '../../fixtures/debian-mirror/mirror.js';
import { tarOf } from '../../fixtures/hostile/images.js';
import { debianPackageDir } from '../../src/kernel/grub.js';
import { listFiles, testEnv, type TestEnv } from './helpers.js';

let key: TestKey;
let deb: Buffer;
let env: TestEnv;
let server: MirrorServer | undefined;

const SPEC = {
  name: 'grub-efi-arm64-bin',
  arch: 'arm64',
  suite: 'bookworm',
  prefix: 'usr/lib/grub/arm64-efi/',
  marker: 'kernel.img',
  cacheName: 'grub',
  dirName: 'arm64-efi',
};

beforeAll(async () => {
  key = await makeTestKey();
  const data = await tarOf({
    './': { dir: true },
    './usr/lib/grub/arm64-efi/': { dir: true },
    './usr/lib/grub/arm64-efi/kernel.img': 'grub kernel',
    './usr/lib/grub/arm64-efi/linux.mod': 'linux module',
    './usr/lib/grub/arm64-efi/moddep.lst': 'linux: boot\n',
    // not plain files of the directory: never written
    './usr/lib/grub/arm64-efi/deeper/x.mod': 'nested',
    './usr/lib/grub/arm64-efi/link.mod': { symlink: '/etc/shadow' },
    './usr/share/doc/grub/copyright': 'GPL-3\n',
  });
  const control = await tarOf({ './': { dir: true }, './control': 'Package: grub-efi-arm64-bin\n' });
  deb = arOf([
    { name: 'debian-binary', data: Buffer.from('2.0\n') },
    { name: 'control.tar.xz', data: xz(control) },
    { name: 'data.tar.xz', data: xz(data) },
  ]);
});
afterAll(async () => key?.close());
beforeEach(async () => {
  env = await testEnv();
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  await env.close();
});

async function mirror(claimSha256?: string): Promise<MirrorServer> {
  const suites: MirrorSuite[] = [
    {
      archive: 'debian',
      suite: 'bookworm',
      arch: 'arm64',
      packages: [
        { name: 'grub-efi-arm64-bin', version: '2.06-13+deb12u1', deb, ...(claimSha256 ? { claimSha256 } : {}) },
      ],
    },
    { archive: 'debian-security', suite: 'bookworm-security', arch: 'arm64', packages: [] },
  ];
  await writeMirror(`${env.dir}/mirror`, suites, key);
  server = await serveMirror(`${env.dir}/mirror`);
  return server;
}

describe('debianPackageDir: GRUB arm64-efi modules from a signed arm64 index', () => {
  it('keeps the plain files of the directory, once; a fresh answer needs no network', async () => {
    const m = await mirror();
    const o = { mirror: `${m.url}/debian`, keyring: key.keyring, cacheDir: env.cache };
    const dir = await debianPackageDir(SPEC, env.ctx, o);
    expect((await listFiles(dir)).sort()).toEqual(['kernel.img', 'linux.mod', 'moddep.lst']);
    const asked = m.requests.length;
    expect(await debianPackageDir(SPEC, env.ctx, o)).toBe(dir);
    expect(m.requests.length).toBe(asked);
  });

  it('a package whose SHA-256 is not the signed index says is refused, and nothing is cached', async () => {
    const m = await mirror('ab'.repeat(32));
    const o = { mirror: `${m.url}/debian`, keyring: key.keyring, cacheDir: env.cache };
    await expect(debianPackageDir(SPEC, env.ctx, o)).rejects.toMatchObject({
      kind: 'badImage',
      message: expect.stringMatching(/has SHA-256 [0-9a-f]{64}, but the signed index says (ab){32}/),
    });
    expect((await listFiles(`${env.cache}/grub`)).filter((f) => !f.startsWith('index-'))).toEqual([]);
  });
});
