// docker-archive:FILE[:REF] — a tar made by docker save, read in place.
import { stat } from 'node:fs/promises';
import { Img2vmError } from '../../core/errors.js';
import { indexImageArchive, openArchiveImage } from '../archive.js';
import type { ParsedSource } from '../index.js';
import type { Transport } from '../transport.js';

export const dockerArchive: Transport = {
  id: 'docker-archive',
  async open(src, ref, env) {
    await splitArchiveTag(src);
    const st = await stat(src.target).catch(() => undefined);
    if (!st?.isFile()) {
      throw new Img2vmError(
        'imageNotFound',
        `docker archive "${src.target}" does not exist or is not a file`,
        'create one with: docker save IMAGE -o FILE',
      );
    }
    return openArchiveImage(await indexImageArchive(src.target, st.size, env.ctx), ref, src.tag);
  },
};

/** docker-archive:FILE[:REF] — REF may hold colons too, so the first prefix that is an existing file is the file. */
async function splitArchiveTag(src: ParsedSource): Promise<void> {
  if ((await stat(src.target).catch(() => undefined))?.isFile()) return;
  for (let i = src.target.indexOf(':'); i > 0; i = src.target.indexOf(':', i + 1)) {
    if ((await stat(src.target.slice(0, i)).catch(() => undefined))?.isFile()) {
      src.tag = src.target.slice(i + 1);
      src.target = src.target.slice(0, i);
      return;
    }
  }
}
