// Test helper: runs shellcheck on a script, failing with its findings (or with how to install it).
import { execFileSync } from 'node:child_process';

/** POSIX sh, since busybox runs some scripts; SC2034: OpenRC scripts set variables openrc-run reads. */
export function shellcheck(script: string, name: string, exclude: string[] = []): void {
  try {
    execFileSync('shellcheck', ['-s', 'sh', '-e', ['SC2034', ...exclude].join(','), '-'], {
      input: script,
      stdio: 'pipe',
    });
  } catch (e) {
    const err = e as { code?: string; stdout?: Buffer };
    if (err.code === 'ENOENT') throw new Error('shellcheck is not installed: run scripts/install-deps.sh');
    throw new Error(`shellcheck ${name}:\n${err.stdout?.toString() ?? String(e)}`);
  }
}
