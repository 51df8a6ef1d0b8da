// oci-archive:FILE[:TAG] — a tar of an OCI image layout, unpacked into the work directory.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Img2vmError } from '../../core/errors.js';
import { progress } from '../../core/events.js';
import { extractArchive, resolveMember } from '../archive.js';
import { openOciLayout } from '../oci.js';
import type { Transport } from '../transport.js';

export const ociArchive: Transport = {
  id: 'oci-archive',
  async open(src, ref, env) {
    const st = await stat(src.target).catch(() => undefined);
    if (!st?.isFile()) {
      throw new Img2vmError(
        'imageNotFound',
        `OCI archive "${src.target}" does not exist or is not a file`,
        'give a tar of an OCI image layout (oci-archive:FILE[:TAG])',
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
    const img = await openOciLayout(dir, ref, {
      tag: src.tag,
      ...env,
      resolve: (m) => resolveMember(a, m),
      transport: 'oci-archive',
      signal: env.ctx.signal,
      label: `OCI archive ${src.target}`,
    });
    return { ...img, workDir: dir };
  },
};
