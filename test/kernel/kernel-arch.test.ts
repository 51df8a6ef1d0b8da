// A kernel's architecture read from its own header, and a --kernel of the wrong architecture refused naming both.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { checkKernelArch, kernelArchOf } from '../../src/kernel/kernel-arch.js';
import { suiteForGrubVersion } from '../../src/kernel/grub.js';
import { kernelVersionOf } from '../../src/kernel/bzimage.js';
import { arm64Image } from '../../src/boot/direct-kernel.js';

/** An x86 bzImage's first sector and setup header: "HdrS" at 0x202. */
function bzImage(): Buffer {
  const b = Buffer.alloc(0x1000);
  b.write('MZ', 0, 'latin1');
  b.write('HdrS', 0x202, 'latin1');
  b.writeUInt16LE(0x020f, 0x206);
  return b;
}

/** An arm64 Image header (Documentation/arch/arm64/booting.rst): "ARM\x64" at 0x38, with the EFI stub's "MZ". */
function armImage(): Buffer {
  const b = Buffer.alloc(0x10000);
  b.write('MZ', 0, 'latin1');
  b.write('ARM\x64', 0x38, 'latin1');
  b.fill(0x5a, 0x40);
  return b;
}

/** An EFI zboot image: "MZ", "zimg" at 4, a PE header at e_lfanew with the machine. */
function zboot(machine: number): Buffer {
  const b = Buffer.alloc(0x200);
  b.write('MZ', 0, 'latin1');
  b.write('zimg', 4, 'latin1');
  b.writeUInt32LE(0x80, 0x3c);
  b.write('PE\0\0', 0x80, 'latin1');
  b.writeUInt16LE(machine, 0x84);
  return b;
}

function elf(machine: number): Buffer {
  const b = Buffer.alloc(64);
  b.write('\x7fELF', 0, 'latin1');
  b.writeUInt16LE(machine, 18);
  return b;
}

describe('kernelArchOf', () => {
  it.each([
    ['bzImage', bzImage(), 'amd64', /HdrS/],
    ['arm64 Image', armImage(), 'arm64', /ARM\\x64/],
    // Debian's arm64 vmlinuz: only the first 64 KiB of the gzip stream are read
    [
      'gzip arm64 Image',
      gzipSync(Buffer.concat([armImage(), Buffer.alloc(1 << 20, 7)])).subarray(0, 64 << 10),
      'arm64',
      /gzip/,
    ],
    ['zboot arm64', zboot(0xaa64), 'arm64', /0xaa64/],
    ['zboot x86-64', zboot(0x8664), 'amd64', /0x8664/],
    ['zboot riscv64', zboot(0x5064), 'other', /0x5064/],
    ['ELF x86-64', elf(62), 'amd64', /machine 62/],
    ['ELF aarch64', elf(183), 'arm64', /machine 183/],
  ] as const)('%s', (_n, bytes, arch, evidence) => {
    const k = kernelArchOf(bytes)!;
    expect(k.arch).toBe(arch);
    expect(k.evidence).toMatch(evidence);
  });

  it('knows nothing of other bytes', () => {
    expect(kernelArchOf(Buffer.alloc(4096))).toBeUndefined();
    expect(kernelArchOf(Buffer.from([0x1f, 0x8b, 1, 2, 3]))).toBeUndefined();
  });
});

describe('checkKernelArch', () => {
  const dir = mkdtempSync(join(tmpdir(), 'img2vm-karch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses an amd64 kernel for an arm64 image and the other way round, naming both sides', async () => {
    const x86 = join(dir, 'vmlinuz-x86');
    const arm = join(dir, 'vmlinuz-arm');
    writeFileSync(x86, bzImage());
    writeFileSync(arm, gzipSync(armImage()));
    await expect(checkKernelArch(x86, 'arm64', `--kernel ${x86}`)).rejects.toThrow(
      /--kernel .*vmlinuz-x86 is an amd64 kernel \(an x86 bzImage \("HdrS" boot header\)\), and the image is linux\/arm64/,
    );
    await expect(checkKernelArch(arm, 'amd64', `--kernel ${arm}`)).rejects.toThrow(
      /is an arm64 kernel \(an arm64 Image .*gzip-compressed\), and the image is linux\/amd64/,
    );
    await expect(checkKernelArch(x86, 'amd64', 'x')).resolves.toBeUndefined();
    await expect(checkKernelArch(arm, 'arm64', 'x')).resolves.toBeUndefined();
  });

  it('reads the release of a gzip-compressed arm64 Image (a --kernel vmlinuz path) from the banner inside', async () => {
    const gz = join(dir, 'vmlinuz-gz');
    const banner = Buffer.from('Linux version 6.1.0-31-cloud-arm64 (debian-kernel@lists.debian.org) #1 SMP\0');
    writeFileSync(gz, gzipSync(Buffer.concat([armImage(), Buffer.alloc(3 << 20, 1), banner, Buffer.alloc(300)])));
    await expect(kernelVersionOf(gz)).resolves.toBe('6.1.0-31-cloud-arm64');
  });
});

describe('suiteForGrubVersion', () => {
  it("takes GRUB's modules from the Debian release of the host's grub-mkimage", () => {
    expect(suiteForGrubVersion('grub-mkimage (GRUB) 2.06-13+deb12u1')).toBe('bookworm');
    expect(suiteForGrubVersion('grub-mkimage (GRUB) 2.12-9')).toBe('trixie');
    expect(() => suiteForGrubVersion('grub-mkimage (GRUB) 2.04-20')).toThrow(/2\.06 \(bookworm\) and 2\.12 \(trixie\)/);
  });
});

describe('arm64Image: the kernel a microVM runner loads on aarch64', () => {
  it('is the Image itself, unwrapped from gzip; another architecture or an EFI zboot is refused', () => {
    const img = armImage();
    expect(arm64Image(img, 'k').equals(img)).toBe(true);
    expect(arm64Image(gzipSync(img), 'k').equals(img)).toBe(true);
    expect(() => arm64Image(bzImage(), '6.1.0-amd64')).toThrow(
      /6\.1\.0-amd64 cannot be booted directly: it is an x86 bzImage/,
    );
    expect(() => arm64Image(zboot(0xaa64), 'k')).toThrow(/EFI zboot/);
  });
});
