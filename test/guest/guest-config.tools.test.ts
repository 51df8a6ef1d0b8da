// The OpenRC entrypoint launcher img2vm writes for Alpine, checked by shellcheck and run for real with dash.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRandom } from '../../src/core/random.js';
import { parseOsRelease } from '../../src/guest/detect.js';
import { recipeFor } from '../../src/guest/distros.js';
import { guestFiles, type GuestOptions } from '../../src/guest/guest-config.js';
import type { ImageConfig } from '../../src/source/image.js';
import { shellcheck } from './shellcheck.js';

const alpine = recipeFor(parseOsRelease('ID=alpine\nVERSION_ID=3.20.3'), 'amd64');
const ctx = () => ({ random: createRandom('guest-config-test'), epochSeconds: 86400 * 20000 });
const plan = (o: GuestOptions, r = alpine, image: ImageConfig = {}) => guestFiles(r, o, image, ctx());

describe('--entrypoint-service', () => {
  const HOSTILE = [
    'two words',
    `it's "quoted"`,
    '$HOME ${PATH} $$',
    '100% %n%%',
    'back\\slash\\',
    'new\nline',
    ';',
    'tab\there',
    '\x07bell',
    'ünï ☃',
    '',
  ];
  const image = (c: NonNullable<ImageConfig['config']>): ImageConfig => ({ config: c });

  it("on Alpine, an OpenRC service whose launcher hands docker's exact argv and Env to the program", () => {
    const dir = mkdtempSync(join(tmpdir(), 'img2vm-entrypoint-'));
    try {
      const argv = [
        '/bin/sh',
        '-c',
        'cd "$1" && pwd && shift 2 && for a; do printf "[%s]\\n" "$a"; done && printf "<%s>\\n" "$X"',
        'sh',
        dir,
        'skip',
        ...HOSTILE,
      ];
      const p = plan(
        { entrypointService: true },
        alpine,
        image({ Cmd: argv, Env: ["X=it's $x\nnext"], WorkingDir: dir }),
      );
      const launcher = p.files.find((f) => f.path === '/usr/local/lib/img2vm/entrypoint')!;
      const service = p.files.find((f) => f.path === '/etc/init.d/img2vm-entrypoint')!;
      expect([launcher.mode, service.mode]).toEqual([0o755, 0o755]);
      expect(service.content).toMatch(/^output_log=\/dev\/console$/m);
      expect(service.content).toMatch(/^command=\/usr\/local\/lib\/img2vm\/entrypoint$/m);
      expect(p.symlinks).toEqual([
        { path: '/etc/runlevels/default/img2vm-entrypoint', target: '/etc/init.d/img2vm-entrypoint' },
      ]);
      // SC2016, SC1003: the single quotes are meant to keep $0, $@ and quotes for sh -c.
      shellcheck(launcher.content, 'launcher', ['SC2016', 'SC1003']);
      shellcheck(service.content, 'service');
      // Run the launcher for real with dash: only sh and printf run, in a temporary directory.
      writeFileSync(join(dir, 'launcher'), launcher.content);
      const out = execFileSync('/bin/dash', [join(dir, 'launcher')], { encoding: 'utf8' });
      expect(out).toBe(`${dir}\n${HOSTILE.map((a) => `[${a}]\n`).join('')}<it's $x\nnext>\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
