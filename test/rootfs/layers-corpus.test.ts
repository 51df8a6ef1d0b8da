// The hostile-source corpus (fixtures/hostile) cases that reach flattening, run through openSource and the tree flattener.
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/core/errors.js';
import type { RunContext } from '../../src/core/context.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';
import { LayerFlattener } from '../../src/rootfs/layers.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { openSource } from '../../src/source/index.js';
import { HOSTILE_CASES } from '../../fixtures/hostile/cases.js';
import { FakeRegistry } from '../../fixtures/hostile/registry.js';
import { EPOCH } from './layers-helpers.js';

const CASES = HOSTILE_CASES.filter((c) => !('error' in c.expect) || c.expect.error.at === 'flatten');

let registry: FakeRegistry;
beforeEach(async () => {
  registry = await FakeRegistry.start();
});
afterEach(async () => {
  await registry.close();
});

describe('hostile corpus through the tree flattener', () => {
  it('has cases that reach flattening', () => {
    expect(CASES.map((c) => c.id)).toEqual(
      expect.arrayContaining([
        'bomb-gzip-zeros',
        'bomb-sparse-file',
        'registry-truncated-gzip',
        'docker-archive-layer-tampered',
      ]),
    );
  });

  it.each(CASES.map((c) => [c.id, c] as const))('%s', async (_id, c) => {
    const dir = await mkdtemp(join(tmpdir(), 'img2vm-corpus-'));
    const scope = new Scope();
    try {
      const input = join(dir, 'input');
      const outside = join(dir, 'outside');
      await mkdir(input);
      await mkdir(outside);
      const ctx: RunContext = {
        work: join(dir, 'work'),
        signal: new AbortController().signal,
        sink: () => {},
        scope,
        random: createRandom('test'),
      };
      await mkdir(ctx.work);
      const ref = await c.prepare({ input, outside, registry });
      const store = new MemoryStore({ discard: true });
      const run = async () => {
        const img = await openSource(ref, ctx, undefined, {
          cacheDir: join(dir, 'cache'),
          registry: { backoffMs: 1, tries: 2 },
        });
        const f = new LayerFlattener({ store, epoch: EPOCH });
        for (const l of img.layers) await f.applyLayer(await l.open());
        return f.finish();
      };
      if ('error' in c.expect) {
        const e = await run().then(
          () => undefined,
          (x: unknown) => x,
        );
        expect(e, `${c.title}: expected an error`).toBeDefined();
        expect(e).toMatchObject({ name: 'Img2vmError', kind: c.expect.error.kind });
        expect((e as Error).message).toMatch(c.expect.error.message);
        expect((e as { exitCode: number }).exitCode).toBe(ExitCode[c.expect.error.kind as keyof typeof ExitCode]);
      } else {
        const r = await run();
        await c.expect.check?.({ root: '(an in-memory tree)', stats: r.stats });
        expect(store.liveCount).toBe(r.stats.files);
      }
      expect(await readdir(outside)).toEqual([]);
    } finally {
      await scope.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
