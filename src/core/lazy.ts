// Loads a dependency on first use instead of at start: every run pays for what the CLI imports, and some packages only a few commands need.
import { createRequire } from 'node:module';
import type * as TarStream from 'tar-stream';

const load = createRequire(import.meta.url);

/** The package `name` (its CommonJS entry), loaded the first time the returned function is called. */
export function lazy<T>(name: string): () => T {
  let m: T | undefined;
  return () => (m ??= load(name) as T);
}

/** tar-stream: only the commands that write a tar (an image to a daemon, a build context, an archive) need it. */
export const tarStream = lazy<typeof TarStream>('tar-stream');
