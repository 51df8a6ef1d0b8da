// `img2vm doctor` as a user runs it, with a PATH that lacks what the default conversion needs.
import { execa } from 'execa';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from './helpers.js';

let bin: string;
beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), 'img2vm-doctor-e2e-'));
  // What bin/img2vm itself needs to start, nothing else.
  for (const t of ['node', 'dirname', 'readlink']) {
    const p = (await execa('sh', ['-c', `command -v ${t}`])).stdout.trim();
    await symlink(p, join(bin, t));
  }
});
afterAll(() => rm(bin, { recursive: true, force: true }));

describe('img2vm doctor', () => {
  it('names each missing tool, its package and purpose, and exits 5', async () => {
    const r = await execa(BIN, ['doctor'], { reject: false, env: { PATH: bin } });
    expect(r.exitCode, r.stdout + r.stderr).toBe(5);
    expect(r.stdout).toMatch(/^MISSING {2}grub-mkimage +grub-common +GRUB for BIOS and UEFI boot/m);
    expect(r.stdout).toMatch(/^the default conversion needs: apt-get install .*grub-common/m);
    // tools only the tests or other formats use are listed, but not as needed
    expect(r.stdout).toMatch(/^missing {2}qemu-img +qemu-utils +vmdk, vhdx, vhd and vdi output/m);
    const j = await execa(BIN, ['doctor', '--json'], { reject: false, env: { PATH: bin } });
    expect(j.exitCode).toBe(5);
    expect(JSON.parse(j.stdout)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'grub-mkimage', ok: false, required: true, package: 'grub-common' }),
      ]),
    );
  });

  it('with the normal PATH of a set-up machine it passes', async () => {
    const r = await execa(BIN, ['doctor'], { reject: false });
    expect(r.exitCode, r.stdout).toBe(0);
  });
});
