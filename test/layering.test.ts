// The rooms of src/ depend downward only: a test fails on an import that breaks the layering (as
// go-containerregistry keeps such a check), so a shortcut across the stages cannot creep in unnoticed.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '..', 'src');

/**
 * Each room's rank: a module may import from its own room and from rooms of a lower rank, never from another room
 * of its own rank or above. core holds types and small helpers; each stage sits above what it uses; the entry
 * points (apply, convert, cli) on top.
 */
const RANKS: Record<string, number> = {
  core: 0,
  tools: 1,
  store: 1,
  rootfs: 2,
  source: 3,
  disk: 3,
  kernel: 4,
  build: 4,
  guest: 5,
  boot: 5,
  output: 5,
  plan: 6,
  'disk-key': 6,
  'write-failure': 6,
  apply: 7,
  convert: 8,
  cache: 8,
  vm: 8,
  cli: 9,
  index: 10,
};

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

function roomOf(src: string, file: string): string {
  const parts = relative(src, file).split('/');
  return parts.length === 1 ? parts[0]!.replace(/\.(ts|js)$/, '') : parts[0]!;
}

/** Every import that breaks the ranks (static, dynamic and type-only alike), and every room without a rank. */
function violations(src: string): string[] {
  const bad: string[] = [];
  for (const f of files(src)) {
    const from = roomOf(src, f);
    if (RANKS[from] === undefined) {
      bad.push(`${relative(src, f)}: room "${from}" has no rank`);
      continue;
    }
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\1/g)) {
      const target = resolve(dirname(f), m[2]!).replace(/\.js$/, '.ts');
      const to = roomOf(src, target);
      if (to !== from && (RANKS[to] ?? Infinity) >= RANKS[from]!) {
        bad.push(
          `${relative(src, f)} (${from}, rank ${RANKS[from]}) imports ${relative(src, target)} (${to}, rank ${RANKS[to]})`,
        );
      }
    }
  }
  return bad;
}

describe('the layering of src/', () => {
  it('has every room ranked and no import from a room of the same or a higher rank', () => {
    expect(violations(SRC)).toEqual([]);
  });

  it('reports an import upward, sideways and from an unknown room (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'img2vm-layering-'));
    try {
      const put = (path: string, text: string) => {
        mkdirSync(dirname(join(dir, path)), { recursive: true });
        writeFileSync(join(dir, path), text);
      };
      put('core/a.ts', "import type { X } from '../apply.js';\n");
      put('guest/b.ts', "export { y } from '../boot/c.js';\n");
      put('boot/c.ts', 'export const y = 1;\n');
      put('apply.ts', "const z = await import('./core/a.js');\n");
      put('newroom/d.ts', "import { y } from '../boot/c.js';\n");
      expect(violations(dir)).toEqual([
        'core/a.ts (core, rank 0) imports apply.ts (apply, rank 7)',
        'guest/b.ts (guest, rank 5) imports boot/c.ts (boot, rank 5)',
        'newroom/d.ts: room "newroom" has no rank',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
