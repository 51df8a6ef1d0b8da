// The ESP's FAT file system: made at its offset inside the disk image, with the volume id the guest's fstab names.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import type { RunContext } from '../../src/core/context.js';
import { fatCopy, makeFat, mtoolsImage } from '../../src/disk/fat.js';

let tmp: string;
let ctx: RunContext;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-fat-'));
  ctx = { work: tmp, signal: new AbortController().signal, sink: () => {}, scope: new Scope(), random: createRandom('fat') };
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

describe('makeFat', () => {
  it('writes FAT32 at the offset with the requested volume id (what fstab mounts by), and fatCopy fills it', async () => {
    const image = join(tmp, 'disk.raw');
    const offset = 1024 * 1024;
    await writeFile(image, '');
    await truncate(image, offset + 64 * 1024 * 1024);
    await makeFat({ image, offset, size: 64 * 1024 * 1024, volumeId: 'C0FFEE42', label: 'EFI' }, ctx);
    const probe = execFileSync('blkid', ['-p', '-O', String(offset), '-o', 'export', image]).toString();
    expect(probe).toMatch(/^UUID=C0FF-EE42$/m);
    expect(probe).toMatch(/^TYPE=vfat$/m);
    expect(probe).toMatch(/^VERSION=FAT32$/m);
    // Nothing before the offset was touched.
    expect(execFileSync('cmp', ['-n', String(offset), image, '/dev/zero'], { encoding: 'utf8' })).toBe('');

    const src = join(tmp, 'hello.efi');
    await writeFile(src, 'not really an EFI binary');
    await fatCopy(image, offset, [{ src, dest: 'EFI/BOOT/BOOTX64.EFI' }, { src, dest: 'loader/entries/x.conf' }], ctx);
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    expect(execFileSync('mtype', ['-i', mtoolsImage(image, offset), '::/EFI/BOOT/BOOTX64.EFI'], { env }).toString()).toBe('not really an EFI binary');
    expect(execFileSync('mdir', ['-b', '-i', mtoolsImage(image, offset), '::/loader/entries'], { env }).toString()).toMatch(/x\.conf/);
  });
});
