// The TSC rate handed to microvm guests under TCG comes from the host's /proc/cpuinfo.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostCpuKhz } from '../../src/vm/machine.js';

describe('hostCpuKhz', () => {
  it('reads the first "cpu MHz" line, and gives up quietly when there is none', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'img2vm-cpuinfo-'));
    try {
      const f = join(dir, 'cpuinfo');
      await writeFile(
        f,
        'processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2596.134\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n',
      );
      expect(await hostCpuKhz(f)).toBe(2596134);
      await writeFile(f, 'processor\t: 0\nBogoMIPS\t: 100\n');
      expect(await hostCpuKhz(f)).toBeUndefined();
      expect(await hostCpuKhz(join(dir, 'missing'))).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
