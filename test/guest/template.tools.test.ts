// The templates' shell scripts parse with dash and bash, are executable, and are clean under shellcheck.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TEMPLATES_DIR } from '../../src/core/paths.js';
import { shellcheck } from './shellcheck.js';

const TEMPLATES = ['debian', 'fedora', 'alpine'];

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

describe('templates', () => {
  it('every shell script parses with dash and bash', () => {
    const scripts = TEMPLATES.flatMap((t) => walk(join(TEMPLATES_DIR, t, 'files'))).filter((f) =>
      /^#!\/(bin\/sh|sbin\/openrc-run)/.test(readFileSync(f, 'utf8')),
    );
    expect(scripts.length).toBeGreaterThanOrEqual(7);
    for (const f of scripts) {
      for (const sh of ['/bin/dash', '/bin/bash']) {
        try {
          execFileSync(sh, ['-n', f], { stdio: 'pipe' });
        } catch (e) {
          throw new Error(
            `${sh} -n ${relative(TEMPLATES_DIR, f)}: ${(e as { stderr?: Buffer }).stderr?.toString() ?? e}`,
          );
        }
      }
      expect(statSync(f).mode & 0o111, `${f} is executable`).not.toBe(0);
    }
  });

  it('every shell script is clean under shellcheck (POSIX sh: busybox runs some of them)', () => {
    const scripts = TEMPLATES.flatMap((t) => walk(join(TEMPLATES_DIR, t, 'files'))).filter((f) =>
      /^#!\/(bin\/sh|sbin\/openrc-run)/.test(readFileSync(f, 'utf8')),
    );
    for (const f of scripts) shellcheck(readFileSync(f, 'utf8'), relative(TEMPLATES_DIR, f));
  });
});
