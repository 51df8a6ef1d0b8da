// `img2vm run IMAGE` failing before any boot, as docker run fails: 125 when img2vm itself fails (an image it cannot
// read, a bad flag value, -t without a terminal), usage errors for image-only flags on a disk, nothing left behind.
import { execa } from 'execa';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from './helpers.js';
import { writeBusyboxImage } from './run-image-fixture.js';

const ENV = { CI: 'true', IMG2VM_ACCEL: 'tcg' };
let work: string;
let image: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'img2vm-e2e-run-image-tools-'));
  image = join(work, 'image.tar');
  await writeBusyboxImage(image);
});
afterAll(() => rm(work, { recursive: true, force: true }));

const run = (args: string[]) =>
  execa(BIN, args, { reject: false, env: { ...ENV, TMPDIR: work }, stdin: 'ignore', timeout: 120_000 });

describe('img2vm run IMAGE before the boot', () => {
  it('an image img2vm cannot read exits 125, as docker does when it cannot run a container', async () => {
    const r = await run(['run', `oci-archive:${join(work, 'missing.tar')}`, 'echo', 'hi']);
    expect(r.exitCode, r.stderr).toBe(125);
    expect(r.stderr).toMatch(/img2vm: error: /);
  });

  it.each([
    [['-v', 'relative:/data'], /no named volumes/],
    [['-p', '80'], /invalid --publish/],
    [['-m', '1x'], /invalid size/],
    [['-t'], /the input device is not a TTY/],
    [['-v', '/nonexistent-dir-of-img2vm:/data'], /is not a directory/],
  ])('%j exits 125 and says why', async (flags, why) => {
    const r = await run(['run', `oci-archive:${image}`, ...flags, 'echo', 'hi']);
    expect(r.exitCode, r.stderr).toBe(125);
    expect(r.stderr).toMatch(why);
  });

  it("image-only flags and a command are refused for a disk, which keeps today's meaning", async () => {
    const disk = join(work, 'vm.qcow2');
    await writeFile(disk, '');
    for (const args of [['-e', 'K=V'], ['-it'], ['--', 'echo', 'hi'], ['-v', '/tmp:/data']]) {
      const r = await run(['run', disk, ...args]);
      expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/is for img2vm run IMAGE, not a disk/);
    }
  });

  it('refuses a LUKS passphrase for an image, which run and test convert without encryption', async () => {
    for (const cmd of ['run', 'test']) {
      const r = await run([cmd, `oci-archive:${image}`, '--luks-password', 'x']);
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toContain(`--luks-password is for img2vm ${cmd} DISK, not an image`);
    }
  });

  it('leaves no temporary directory behind', async () => {
    expect((await readdir(work)).filter((n) => n.startsWith('img2vm-run'))).toEqual([]);
  });
});
