// The cache key of a guest build: which builder (and its version), the base image, and every byte of the rendered template.
import { createHash } from 'node:crypto';
import type { RenderedRecipe } from './recipe.js';

/**
 * sha256 hex over the builder and its version, the base image id, the rendered Dockerfile (which holds the
 * values) and each template file's path, mode and bytes. Anything that could change the result is in it.
 */
export function buildKey(
  builder: string,
  version: string,
  baseId: string,
  r: Pick<RenderedRecipe, 'dockerfile' | 'files'>,
): string {
  const h = createHash('sha256').update(`img2vm-build:${builder}:${version}\0${baseId}\0`);
  const dockerfile = Buffer.from(r.dockerfile, 'utf8');
  h.update(`Dockerfile\0${dockerfile.length}\0`).update(dockerfile);
  for (const f of [...r.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    h.update(`${f.path}\0${f.mode}\0${f.content.length}\0`).update(f.content);
  }
  return h.digest('hex');
}
