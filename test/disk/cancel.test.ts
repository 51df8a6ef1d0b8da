// The disk writers stop when the run is aborted: FAT between chunks of a file it streams, ext4 finish between its
// passes (and before copying contents in), each with the abort's reason.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ext4Writer } from '../../src/disk/ext4/index.js';
import { writeFat32 } from '../../src/disk/fat32.js';
import { RawFileTarget } from '../../src/disk/target.js';
import { MiB } from '../../src/core/units.js';
import { dir, EPOCH, SEED, tmp, UUID, type Tmp } from './ext4/helpers.js';

let t: Tmp;
beforeEach(() => {
  t = tmp();
});
afterEach(() => t.done());

describe('cancellation of the disk writers', () => {
  it('writeFat32 stops streaming a file when aborted, and reads no further', async () => {
    const target = new RawFileTarget(t.path('esp.raw'));
    target.resize(64 * MiB);
    const ac = new AbortController();
    const reason = new Error('interrupted by SIGTERM');
    let chunks = 0;
    const content = {
      size: 32 * MiB,
      async *read() {
        for (;;) {
          chunks++;
          if (chunks === 3) ac.abort(reason);
          yield Buffer.alloc(MiB, 1);
        }
      },
    };
    await expect(
      writeFat32(
        target,
        { offset: 0, size: 64 * MiB, volumeId: 1, label: 'EFI', epoch: EPOCH },
        [{ path: 'EFI/BOOT/BIG.EFI', content }],
        ac.signal,
      ),
    ).rejects.toBe(reason);
    expect(chunks).toBe(3);
    target.close();
  });

  it('Ext4Writer.finish stops with an aborted signal', async () => {
    const target = new RawFileTarget(t.path('root.raw'));
    const w = new Ext4Writer({ target, offset: 0, uuid: UUID, label: 'root', hashSeed: SEED, epoch: EPOCH });
    const ac = new AbortController();
    const reason = new Error('interrupted by SIGINT');
    ac.abort(reason);
    await expect(w.finish(dir(), { sizeBytes: 64 * MiB, inodeCount: 4096, signal: ac.signal })).rejects.toBe(reason);
    target.close();
  });
});
