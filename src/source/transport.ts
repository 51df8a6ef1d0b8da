// The transport interface: one file per way of reading an image (docker://, docker-daemon:, oci:, ...).
import type { RunContext } from '../core/context.js';
import type { DockerClient } from './docker-api.js';
import type { SourceImage } from './image.js';
import type { ParsedSource, Resolved, Transport as TransportId } from './index.js';
import type { PullContext } from './pull.js';

export interface TransportEnv extends Resolved {
  ctx: RunContext;
  docker(): DockerClient;
  pullContext(): PullContext;
  /** A fresh directory below the work directory for an unpacked copy. */
  workDir(): Promise<string>;
}

export interface Transport {
  id: TransportId;
  open(src: ParsedSource, ref: string, env: TransportEnv): Promise<SourceImage>;
}
