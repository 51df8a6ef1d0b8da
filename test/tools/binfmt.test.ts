// Reading /proc/sys/fs/binfmt_misc: the status, every handler but the register file, nothing when it is not mounted.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { emulationFor, parseBinfmt } from '../../src/guest/binfmt.js';
import { readBinfmtFiles } from '../../src/tools/binfmt.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'img2vm-binfmt-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readBinfmtFiles', () => {
  it('reads the status and each handler, leaving out register', async () => {
    const handler =
      'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n' +
      'magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n';
    await writeFile(join(dir, 'status'), 'enabled\n');
    await writeFile(join(dir, 'register'), '');
    await writeFile(join(dir, 'qemu-aarch64'), handler);
    const files = readBinfmtFiles(dir);
    expect(files).toEqual({ status: 'enabled\n', entries: { 'qemu-aarch64': handler } });
    expect(emulationFor(parseBinfmt(files), 'arm64')).toMatchObject({ ok: true });
  });

  it('no status file (binfmt_misc not mounted): no handlers either', async () => {
    await writeFile(join(dir, 'qemu-aarch64'), 'enabled\n');
    expect(readBinfmtFiles(dir)).toEqual({ entries: {} });
    expect(readBinfmtFiles(join(dir, 'absent'))).toEqual({ entries: {} });
  });
});
