// oci:DIR[:TAG] — an OCI image layout directory, read in place.
import { resolve as resolvePath } from 'node:path';
import { openOciLayout } from '../oci.js';
import type { Transport } from '../transport.js';

export const oci: Transport = {
  id: 'oci',
  open: (src, ref, env) =>
    openOciLayout(resolvePath(src.target), ref, { tag: src.tag, ...env, signal: env.ctx.signal }),
};
