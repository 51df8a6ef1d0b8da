// The registry client with host programs: zstd layers (the zstd tool makes them; Node 20 reads them with it) and docker-credential helpers.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSource, type OpenSourceOptions } from '../../src/source/index.js';
import { buildImage, gz, tarOf, type BuiltImage } from '../../fixtures/hostile/images.js';
import { FakeRegistry, type FakeRegistryOptions } from '../../fixtures/hostile/registry.js';
import { flatten, listTree, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let reg: FakeRegistry;

async function start(o: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  reg = await FakeRegistry.start(o);
  return reg;
}

beforeEach(async () => {
  sb = await sandbox();
});
afterEach(async () => {
  await reg?.close();
  await sb.close();
});

/** An image with `n` layers holding incompressible files, so sizes are what they say. */
async function image(
  n = 2,
  bytes = 64 * 1024,
  platform?: BuiltImage['platform'],
  tagFile = 'marker',
): Promise<BuiltImage> {
  const layers: Buffer[] = [];
  for (let i = 0; i < n; i++)
    layers.push(
      gz(
        await tarOf({
          [`layer${i}/`]: { dir: true },
          [`layer${i}/data.bin`]: randomBytes(bytes),
          [`${tagFile}${i}`]: `${i}\n`,
        }),
      ),
    );
  return buildImage({ layers, platform });
}

function opts(extra: OpenSourceOptions = {}): OpenSourceOptions {
  return { cacheDir: sb.cache, registry: { backoffMs: 1 }, env: { HOME: sb.input }, ...extra };
}

async function pullAndList(ref: string, o: OpenSourceOptions = opts()): Promise<string[]> {
  const img = await openSource(ref, sb.ctx, undefined, o);
  const root = join(sb.work, `root-${Math.random().toString(36).slice(2)}`);
  await flatten(img, root);
  return listTree(root);
}

describe('pulling', () => {
  it('handles uncompressed layers, and zstd layers (on every Node: its own zstd, else the zstd tool)', async () => {
    await start();
    const plain = buildImage({ layers: [await tarOf({ 'a.txt': 'a' })] });
    reg.push('plain', 'v1', plain);
    expect(await pullAndList(`docker://${reg.host}/plain:v1`)).toEqual(['a.txt']);
    const zr = spawnSync('zstd', ['-q', '-c'], { input: await tarOf({ 'z.txt': 'z' }) });
    expect(zr.status, `zstd: ${zr.error?.message ?? zr.stderr}`).toBe(0);
    const z = buildImage({ layers: [zr.stdout], layerMediaType: 'application/vnd.oci.image.layer.v1.tar+zstd' });
    reg.push('zstd', 'v1', z);
    expect(await pullAndList(`docker://${reg.host}/zstd:v1`)).toEqual(['z.txt']);
  });
});

describe('credentials', () => {
  it('asks credHelpers and credsStore helpers (docker-credential-NAME get, server URL on stdin)', async () => {
    await start({ auth: 'basic', users: { carol: 'from-helper' } });
    reg.push('private', 'v1', await image(1));
    const bin = join(sb.input, 'bin');
    await mkdir(bin);
    const stdinLog = join(sb.input, 'helper-stdin');
    await writeFile(
      join(bin, 'docker-credential-fake'),
      `#!/bin/sh\n[ "$1" = get ] || exit 3\nread url\necho "$url" >> ${stdinLog}\nif [ "$url" = "${reg.host}" ]; then echo '{"ServerURL":"'$url'","Username":"carol","Secret":"from-helper"}'; else echo "credentials not found in native keychain"; exit 1; fi\n`,
    );
    await chmod(join(bin, 'docker-credential-fake'), 0o755);
    const oldPath = process.env.PATH;
    process.env.PATH = `${bin}:${oldPath}`;
    try {
      const dir = join(sb.input, 'cfg');
      await mkdir(dir);
      await writeFile(join(dir, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'fake' } }));
      expect(await pullAndList(`docker://${reg.host}/private:v1`, opts({ env: { DOCKER_CONFIG: dir } }))).toContain(
        'marker0',
      );
      expect((await readFile(stdinLog, 'utf8')).trim()).toBe(reg.host);
      // credsStore: a helper that does not know the registry means anonymous (and then a login error).
      await writeFile(join(dir, 'config.json'), JSON.stringify({ credsStore: 'fake' }));
      await reg.close();
      await start({ auth: 'basic', users: { carol: 'from-helper' } });
      reg.push('private', 'v1', await image(1));
      // The new registry has another port, which the helper does not know.
      await expect(
        openSource(`docker://${reg.host}/private:v1`, sb.ctx, undefined, opts({ env: { DOCKER_CONFIG: dir } })),
      ).rejects.toThrow(/requires a login/);
      // A helper that is not installed is a warning, not a failure.
      await writeFile(join(dir, 'config.json'), JSON.stringify({ credsStore: 'missing-helper' }));
      await expect(
        openSource(`docker://${reg.host}/private:v1`, sb.ctx, undefined, opts({ env: { DOCKER_CONFIG: dir } })),
      ).rejects.toThrow(/requires a login/);
      expect(
        sb.events.some(
          (e) => e.type === 'log' && e.level === 'warn' && /docker-credential-missing-helper/.test(e.message),
        ),
      ).toBe(true);
    } finally {
      process.env.PATH = oldPath;
    }
  });
});
