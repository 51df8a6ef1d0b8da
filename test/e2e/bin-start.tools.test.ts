// How the CLI starts: node without source maps unless asked for, and no package only some commands need (each costs every start its load time).
import { execa } from 'execa';
import { chmod, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO } from './helpers.js';

let bin: string;
beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), 'img2vm-bin-start-'));
  for (const t of ['dirname', 'readlink']) {
    const p = (await execa('sh', ['-c', `command -v ${t}`])).stdout.trim();
    await symlink(p, join(bin, t));
  }
  // A node that only says how it was called.
  await writeFile(join(bin, 'node'), '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n');
  await chmod(join(bin, 'node'), 0o755);
});
afterAll(() => rm(bin, { recursive: true, force: true }));

describe('bin/img2vm', () => {
  it('starts node without source maps by default, and passes the arguments through', async () => {
    const r = await execa(BIN, ['--version', 'a b'], { env: { PATH: bin }, extendEnv: false });
    const args = r.stdout.split('\n');
    expect(args).not.toContain('--enable-source-maps');
    expect(args[0]).toMatch(/dist\/cli\/main\.js$/);
    expect(args.slice(1)).toEqual(['--version', 'a b']);
  });

  it('with IMG2VM_SOURCE_MAPS=1 turns them on', async () => {
    const r = await execa(BIN, ['--version'], { env: { PATH: bin, IMG2VM_SOURCE_MAPS: '1' }, extendEnv: false });
    expect(r.stdout.split('\n')).toEqual([
      '--enable-source-maps',
      expect.stringMatching(/dist\/cli\/main\.js$/),
      '--version',
    ]);
  });
});

describe('the CLI at start', () => {
  it('loads neither yaml (--config), listr2 (a terminal) nor tar-stream (build, containerdisk, daemon import)', async () => {
    // Node's CommonJS cache, read as the process exits: packages imported from ESM land there too.
    const probe = join(bin, 'probe.mjs');
    await writeFile(
      probe,
      "import { createRequire } from 'node:module';\n" +
        "const M = createRequire(import.meta.url)('module');\n" +
        "process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify(Object.keys(M._cache)) + '\\n'));\n",
    );
    const r = await execa(process.execPath, ['--import', probe, join(REPO, 'dist', 'cli', 'main.js'), '--version']);
    const loaded = JSON.parse(/^LOADED (.*)$/m.exec(r.stderr)![1]!) as string[];
    expect(loaded.some((k) => k.includes('/node_modules/commander/'))).toBe(true);
    expect(loaded.filter((k) => /\/node_modules\/(yaml|listr2|tar-stream)\//.test(k))).toEqual([]);
  });
});
