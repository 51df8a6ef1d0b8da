// The test archive key's keyring holds exactly the bytes gpg exports, whatever they end with (a final 0x0a was lost).
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { exportKeyring } from '../../fixtures/debian-mirror/gpg.js';

const path = process.env.PATH;
let dir: string | undefined;
afterEach(() => {
  process.env.PATH = path;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('exportKeyring', () => {
  it('keeps a final newline byte: a key ending in 0x0a is one Ed25519 key in about seventeen', async () => {
    dir = mkdtempSync(join(tmpdir(), 'img2vm-gpg-fixture-'));
    // A stand-in gpg whose export ends in 0x0a, written where it is asked to (--output) or else to stdout.
    const bytes = Buffer.from([0x98, 0x33, 0x04, 0x00, 0x0a, 0x0d, 0x0a]);
    writeFileSync(join(dir, 'key.bin'), bytes);
    writeFileSync(
      join(dir, 'gpg'),
      `#!/bin/sh\nout=\nwhile [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done\nif [ -n "$out" ]; then cat '${dir}/key.bin' > "$out"; else cat '${dir}/key.bin'; fi\n`,
    );
    chmodSync(join(dir, 'gpg'), 0o755);
    process.env.PATH = `${dir}:${path}`;
    await exportKeyring(dir, 'F'.repeat(40), join(dir, 'keyring.gpg'));
    expect(readFileSync(join(dir, 'keyring.gpg'))).toEqual(bytes);
  });
});
