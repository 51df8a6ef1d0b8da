// `img2vm plan --config FILE --json`: the file's options reach the plan, flags on the command line win, and a bad file exits 2 listing every problem.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImage, gz, imageBlobs, tarOf, writeLayout } from '../../fixtures/hostile/images.js';
import { img2vm } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'img2vm-e2e-config-'));
  // --raw plans (and converts) only an image with a kernel of its own: a stand-in is enough to plan.
  const img = buildImage({
    layers: [
      gz(
        await tarOf({
          'etc/': { dir: true },
          'etc/hostname': 'x\n',
          'bin/app': '#!/bin/sh\n',
          'boot/': { dir: true },
          'boot/vmlinuz-6.1.0-test': 'not a kernel\n',
        }),
      ),
    ],
  });
  await writeLayout(join(dir, 'layout'), [{ top: img.manifest, tag: 'v1' }], imageBlobs(img));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('img2vm plan --config', () => {
  it('takes image and options from the file, flags win', async () => {
    const config = join(dir, 'img2vm.yaml');
    await writeFile(
      config,
      [
        `image: oci:${join(dir, 'layout')}:v1`,
        'raw: true',
        'boot: uefi',
        'boot-partition: 256M',
        'kernel-cmdline: quiet loglevel=3',
        'hostname: from-file',
        'insecure-registry: [reg.lan, other.lan]',
        `output: ${join(dir, 'disk.qcow2')}`,
        '',
      ].join('\n'),
    );
    const r = await img2vm([
      'plan',
      '--config',
      config,
      '--json',
      '--hostname',
      'from-flag',
      '-o',
      join(dir, 'disk.raw'),
    ]);
    expect(r.exitCode, r.all).toBe(0);
    const p = JSON.parse(r.stdout) as {
      image: string;
      guest: { strategy: string };
      boot: { mode: string; userCmdline: string };
      hostname: string;
      layout: { partitions: { role: string; size: number }[] };
      output: { format: string; path: string };
    };
    expect(p.image).toBe(`oci:${join(dir, 'layout')}:v1`);
    expect(p.guest.strategy).toBe('image');
    expect(p.boot).toMatchObject({ mode: 'uefi', userCmdline: 'quiet loglevel=3' });
    expect(p.layout.partitions.find((x) => x.role === 'boot')?.size).toBe(256 * 1024 * 1024);
    expect(p.hostname).toBe('from-flag');
    expect(p.output).toMatchObject({ format: 'raw', path: join(dir, 'disk.raw') });
  });

  it('a bad file exits 2 with every problem and its key, in --json too', async () => {
    const config = join(dir, 'bad.json');
    await writeFile(config, JSON.stringify({ boot: 'efi', nosuchkey: 1, 'boot-partition': 'lots' }));
    const r = await img2vm(['plan', 'x', '--config', config, '--json']);
    expect(r.exitCode).toBe(2);
    const message = `${config}: boot: Invalid option: expected one of "hybrid"|"bios"|"uefi"; nosuchkey: unknown option; boot-partition: invalid size "lots": use a number with an optional unit, e.g. 512M, 4G`;
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { kind: 'usage', exitCode: 2, message } });
    expect(r.stderr).toContain(`img2vm: error: ${message}`);
  });
});
