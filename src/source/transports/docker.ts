// docker://REF — an image pulled from a registry into the blob cache and read from there.
import { openRegistryImage } from '../pull.js';
import { parseDockerReference } from '../reference.js';
import type { Transport } from '../transport.js';

export const docker: Transport = {
  id: 'docker',
  open: (src, ref, env) => openRegistryImage(parseDockerReference(src.target), ref, env.pullContext()),
};
