// docker-archive:FILE[:REF] — a tar made by docker save, unpacked into the work directory.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Img2vmError } from '../../core/errors.js';
import { progress } from '../../core/events.js';
import { extractArchive, openArchiveImage } from '../archive.js';
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
    const dir = await env.workDir();
    const bar = progress(env.ctx.sink, 'source', 'bytes', st.size, 'archive');
    const a = await extractArchive(createReadStream(src.target), dir, {
      onBytes: (n) => bar.add(n),
      signal: env.ctx.signal,
      size: st.size,
    });
    bar.end();
    return { ...(await openArchiveImage(a, ref, src.tag)), workDir: dir };
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
