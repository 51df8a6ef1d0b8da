// oci-archive:FILE[:TAG] — a tar of an OCI image layout, read in place (members where they lie in the tar).
import { stat } from 'node:fs/promises';
import { Img2vmError } from '../../core/errors.js';
import { indexImageArchive } from '../archive.js';
import { archiveFiles, openLayoutImage } from '../oci.js';
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
    const a = await indexImageArchive(src.target, st.size, env.ctx);
    return openLayoutImage(archiveFiles(a), `OCI archive ${src.target}`, ref, {
      tag: src.tag,
      ...env,
      transport: 'oci-archive',
      signal: env.ctx.signal,
    });
  },
};
