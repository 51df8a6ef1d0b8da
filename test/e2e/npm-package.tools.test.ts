// The npm package installs and works away from the checkout: `npm pack` in a copy of the sources without dist/ or
// native/init builds both (prepack), and the tarball installed into an empty prefix converts an image from a
// directory that has no checkout in it.
import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxArchive, kernelFiles } from './ci-fixtures.js';
import { REPO } from './helpers.js';

let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-npm-'));
}, 60_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('npm pack and install', () => {
  it('packs what the package needs (built by prepack) and converts from an install outside the checkout', async () => {
    // The sources as a fresh clone has them after npm ci: no dist/, no native/init (node_modules copied, not linked:
    // npm packs the bundled dependencies from the tree it finds there).
    const src = join(tmp, 'src');
    await mkdir(src);
    await execa('bash', [
      '-c',
      `tar -C "$1" --exclude=./dist --exclude=./native/init --exclude=./.git -cf - . | tar -C "$2" -xf -`,
      'copy',
      REPO,
      src,
    ]);
    const packed = await execa('npm', ['pack', '--pack-destination', tmp, '--json'], { cwd: src, all: true });
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as {
      filename: string;
      files: { path: string }[];
    }[];
    const files = info!.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['bin/img2vm', 'dist/cli/main.js', 'native/init', 'package.json']));
    expect(files.some((f) => f.startsWith('src/') || f.startsWith('test/'))).toBe(false);

    // Installed into an empty prefix from the tarball alone: the dependencies come from npm's local cache.
    const prefix = join(tmp, 'prefix');
    const home = join(tmp, 'elsewhere');
    await mkdir(home);
    await execa(
      'npm',
      ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', join(tmp, info!.filename)],
      { cwd: home },
    );
    const bin = join(prefix, 'bin', 'img2vm');
    expect((await stat(bin)).isFile()).toBe(true);
    expect((await readdir(join(prefix, 'lib', 'node_modules', 'img2vm', 'node_modules'))).sort()).toEqual(
      expect.arrayContaining(['commander', 'execa', 'listr2', 'tar-stream', 'yaml', 'zod']),
    );

    const image = join(home, 'image.tar');
    await busyboxArchive(image, 'from the npm package');
    const kernel = await kernelFiles(join(home, 'kernel'));
    const r = await execa(bin, [`oci-archive:${image}`, '-o', 'disk.qcow2', '--json', ...kernel], {
      cwd: home,
      env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock', XDG_CACHE_HOME: join(home, 'cache') },
      reject: false,
      all: true,
    });
    expect(r.exitCode, r.all).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ output: join(home, 'disk.qcow2'), format: 'qcow2' });
    const info2 = await execa('qemu-img', ['info', '--output=json', join(home, 'disk.qcow2')]);
    expect(JSON.parse(info2.stdout)).toMatchObject({ format: 'qcow2' });
  });
});
