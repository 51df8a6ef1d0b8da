// Golden bytes of the partition tables for fixed, seeded layouts; UPDATE_GOLDEN=1 rewrites them (check them with sfdisk first).
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { partitionTableBytes } from '../../src/disk/table.js';
import { CASES, caseLayout } from './cases.js';

const GOLDEN_DIR = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

describe('partition tables match the golden files', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const chunks = partitionTableBytes(caseLayout(c));
      // One file per chunk, named by its byte offset, so a disk can be rebuilt from them with dd.
      if (update) {
        mkdirSync(GOLDEN_DIR, { recursive: true });
        for (const ch of chunks) writeFileSync(join(GOLDEN_DIR, `${c.name}.${ch.offset}.bin`), ch.bytes);
      }
      const files = existsSync(GOLDEN_DIR)
        ? readdirSync(GOLDEN_DIR)
            .filter((f) => f.startsWith(`${c.name}.`))
            .sort()
        : [];
      expect(files).toEqual(chunks.map((ch) => `${c.name}.${ch.offset}.bin`).sort());
      for (const ch of chunks) {
        const golden = readFileSync(join(GOLDEN_DIR, `${c.name}.${ch.offset}.bin`));
        expect(ch.bytes.equals(golden), `${c.name} at ${ch.offset} differs from its golden file`).toBe(true);
      }
    });
  }
});
