// An encrypted root that boots: a Debian image converted with --luks-password and --init distro (its initramfs
// unlocks the root, told which volume by the kernel command line), the passphrase typed by img2vm test on the
// serial console; a wrong passphrase fails at once with a clear message instead of waiting for the timeout.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { debianFixture, img2vm } from './helpers.js';

const PASS = 'unlock me, img2vm';
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-luks-boot-'));
  await debianFixture('img2vm-demo:bookworm');
}, 600_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

it('--init distro: the initramfs asks for the passphrase, img2vm test types it, the guest comes up', async () => {
  const disk = join(tmp, 'luks.qcow2');
  const c = await img2vm([
    'img2vm-demo:bookworm',
    '--init',
    'distro',
    '--builder',
    'docker',
    '--luks-password',
    PASS,
    '-o',
    disk,
    '--json',
  ]);
  expect(c.exitCode, c.all).toBe(0);
  expect(c.stdout).not.toContain(PASS);
  const ok = await img2vm(['test', disk, '--luks-password', PASS, '--timeout', '900', '--json']);
  expect(ok.exitCode, ok.all).toBe(0);

  const bad = await img2vm(['test', disk, '--luks-password', 'not the passphrase', '--timeout', '900']);
  expect(bad.exitCode, bad.all).toBe(23);
  // ended at the refusal (a timeout would be exit 20)
  expect(bad.stderr).toMatch(/the LUKS passphrase was refused|asked for the LUKS passphrase again/);
}, 2_400_000);
