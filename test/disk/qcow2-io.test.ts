// pwriteAll: a large buffer goes out in bounded pieces (a daemon export stalls while one long write holds the main thread), every byte where it belongs.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createRandom } from '../../src/core/random.js';
import { pwriteAll, WRITE_PIECE } from '../../src/disk/qcow2/io.js';

const tmp = mkdtempSync(join(tmpdir(), 'img2vm-qcow2-io-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('pwriteAll', () => {
  it('writes an 8 MiB batch as 256 KiB pieces, byte for byte at its offset', () => {
    expect(WRITE_PIECE).toBe(256 * 1024);
    const data = createRandom('pieces').bytes(8 * 1024 * 1024 + 5);
    const file = join(tmp, 'big');
    const fd = openSync(file, 'w+');
    const stats = { writeCalls: 0, readCalls: 0 };
    try {
      pwriteAll(fd, data, 4096, stats);
    } finally {
      closeSync(fd);
    }
    expect(stats.writeCalls).toBe(33);
    const back = readFileSync(file);
    expect(back.length).toBe(4096 + data.length);
    expect(back.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    expect(Buffer.compare(back.subarray(4096), Buffer.from(data))).toBe(0);
  });

  it('writes a small buffer in one call', () => {
    const file = join(tmp, 'small');
    const fd = openSync(file, 'w+');
    const stats = { writeCalls: 0, readCalls: 0 };
    try {
      pwriteAll(fd, Buffer.from('hello'), 10, stats);
    } finally {
      closeSync(fd);
    }
    expect(stats.writeCalls).toBe(1);
    expect(readFileSync(file).subarray(10).toString()).toBe('hello');
  });
});
