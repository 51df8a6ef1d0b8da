// Runs the generated hostile-input corpus (fixtures/hostile) through openSource and flattening: a clear error or a safe result, and nothing written outside work/ and the cache.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/errors.js';
import { openSource } from '../../src/source/index.js';
import { HOSTILE_CASES } from '../../fixtures/hostile/cases.js';
import { FakeRegistry } from '../../fixtures/hostile/registry.js';
import { flatten, partials, sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let registry: FakeRegistry;

beforeEach(async () => {
  sb = await sandbox();
  registry = await FakeRegistry.start();
});
afterEach(async () => {
  await registry.close();
  await sb.close();
});

describe('hostile image sources', () => {
  it.each(HOSTILE_CASES.map((c) => [c.id, c] as const))('%s', async (_id, c) => {
    const ref = await c.prepare({ input: sb.input, outside: sb.outside, registry });
    const run = async () => {
      const img = await openSource(ref, sb.ctx, undefined, {
        cacheDir: sb.cache,
        registry: { backoffMs: 1, tries: 2 },
      });
      if ('error' in c.expect && c.expect.error.at === 'open') return { img, stats: undefined };
      const root = join(sb.work, 'rootfs');
      return { img, stats: await flatten(img, root), root };
    };
    if ('error' in c.expect) {
      const want = c.expect.error;
      const e = await run().then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e, `${c.title}: expected an error`).toBeDefined();
      expect(e).toMatchObject({ name: 'Img2vmError', kind: want.kind });
      expect((e as Error).message).toMatch(want.message);
      expect((e as { exitCode: number }).exitCode).toBe(ExitCode[want.kind as keyof typeof ExitCode]);
      expect((e as { hint?: string }).hint).toBeTruthy();
    } else {
      const r = await run();
      await c.expect.check?.({ root: r.root!, stats: r.stats! });
    }
    // Nothing escaped: only work/ and cache/ may have changed, the cache holds no partial files.
    expect((await readdir(sb.root)).sort()).toEqual(['cache', 'input', 'outside', 'work']);
    expect(await readdir(sb.outside)).toEqual([]);
    expect(await partials(sb.cache)).toEqual([]);
  });
});
