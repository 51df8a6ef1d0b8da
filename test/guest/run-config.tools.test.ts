// img2vm's init reads the run config disk exactly as img2vm writes it (native/runcfg.c against src/vm/run-config.ts),
// and refuses what it does not understand rather than guessing.
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderRunConfig } from '../../src/vm/run-config.js';

const REPO = join(import.meta.dirname, '..', '..');
const INIT = join(REPO, 'native', 'init');
const dir = mkdtempSync(join(tmpdir(), 'img2vm-runcfg-'));

beforeAll(async () => {
  const r = await execa('bash', [join(REPO, 'scripts', 'build-native.sh')], { reject: false, all: true });
  expect(r.exitCode, r.all).toBe(0);
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function check(bytes: Buffer) {
  const f = join(dir, 'rc');
  writeFileSync(f, bytes);
  return execa(INIT, ['--check-run', f], { reject: false, encoding: 'latin1' });
}

describe('the run config disk', () => {
  it('round-trips every setting, bytes of any value included', async () => {
    const weird = 'a\nb\\c\x01\x7f é';
    const r = await check(
      renderRunConfig({
        argv: ['sh', '-c', weird, ''],
        env: ['K=V', `W=${weird}`],
        cwd: '/work dir',
        user: '1000:1000',
        tty: true,
        interactive: false,
        rows: 33,
        cols: 111,
        mounts: [
          { tag: 'img2vm-vol0', path: '/data', readOnly: false },
          { tag: 'img2vm-vol1', path: '/ro dir', readOnly: true },
        ],
      }),
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const latin1 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
    expect(JSON.parse(r.stdout)).toEqual({
      argv: ['sh', '-c', latin1(weird), ''],
      env: ['K=V', latin1(`W=${weird}`)],
      cwd: '/work dir',
      user: '1000:1000',
      tty: 1,
      interactive: 0,
      rows: 33,
      cols: 111,
      volumes: [
        { tag: 'img2vm-vol0', path: '/data', ro: false },
        { tag: 'img2vm-vol1', path: '/ro dir', ro: true },
      ],
    });
  });

  it('no command and no -t: no argv (the image runs its own), tty 2 (docker run without -t)', async () => {
    const r = await check(renderRunConfig({ env: [], tty: false, interactive: false, mounts: [] }));
    expect(JSON.parse(r.stdout)).toMatchObject({ argv: [], tty: 2, interactive: 0, volumes: [] });
  });

  it.each([
    ['a wrong magic', 'img2vm-run 2\nend\n', /first line must be "img2vm-run 1"/],
    ['no end', 'img2vm-run 1\narg x\n', /no "end" line/],
    ['an unknown key', 'img2vm-run 1\nmode init\nend\n', /unknown key "mode"/],
    ['a relative cwd', 'img2vm-run 1\ncwd x\nend\n', /absolute path/],
    ['a bad volume tag', 'img2vm-run 1\nvolume rw ../x /data\nend\n', /volume must be/],
    ['a raw control byte', 'img2vm-run 1\narg a\tb\nend\n', /raw control byte/],
    ['text after end', 'img2vm-run 1\nend\narg x\n', /text after "end"/],
  ])('refuses %s', async (_what, text, why) => {
    const r = await check(Buffer.from(text, 'latin1'));
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(why);
  });
});
