// Shared helpers of the kernel tests: a RunContext over a temp dir that records events, and listing a cache.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunContext } from '../../src/core/context.js';
import type { Img2vmEvent } from '../../src/core/events.js';
import { createRandom } from '../../src/core/random.js';
import { Scope } from '../../src/core/scope.js';

export interface TestEnv {
  dir: string;
  cache: string;
  ctx: RunContext;
  events: Img2vmEvent[];
  logs(level?: 'info' | 'warn' | 'debug'): string[];
  close(): Promise<void>;
}

export async function testEnv(): Promise<TestEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'img2vm-kernel-'));
  const work = await mkdtemp(join(dir, 'work-'));
  const events: Img2vmEvent[] = [];
  const scope = new Scope();
  const ctx: RunContext = {
    work,
    signal: new AbortController().signal,
    sink: (e) => events.push(e),
    scope,
    random: createRandom('kernel'),
  };
  return {
    dir,
    cache: join(dir, 'cache'),
    ctx,
    events,
    logs: (level) => events.flatMap((e) => (e.type === 'log' && (!level || e.level === level) ? [e.message] : [])),
    async close() {
      await scope.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Every file below dir (relative paths), [] when dir does not exist. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else out.push(r);
    }
  };
  await walk('');
  return out.sort();
}
