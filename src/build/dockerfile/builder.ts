// The interface of `img2vm build`'s builders: what turns a Dockerfile and its context into an image a conversion can open.
import type { ToolName } from '../../tools/index.js';

export const DOCKERFILE_BUILDER_IDS = ['docker', 'buildah'] as const;
export type DockerfileBuilderId = (typeof DOCKERFILE_BUILDER_IDS)[number];

/** What the user asked to build, as `docker build` spells it. */
export interface DockerfileRequest {
  /** The build context directory (absolute). */
  context: string;
  /** The Dockerfile (absolute). */
  file: string;
  /** K=V pairs, in the order given. */
  buildArgs: string[];
  target?: string;
  platform?: string;
  /** Keep the result under this name; without it nothing named is left behind. */
  tag?: string;
}

export interface BuildRun {
  /** A private directory for the builder's files (id file, exported layout), removed by the caller. */
  dir: string;
  signal: AbortSignal;
  /** Each line the builder prints, as it prints it. */
  onLine: (line: string) => void;
}

/** A built image: the reference a conversion opens it by, and what to do once the conversion has read it. */
export interface BuiltImage {
  id: string;
  ref: string;
  /** Removes what the build made that nobody asked to keep (the image, unless tagged). Idempotent. */
  release(): Promise<void>;
}

export interface DockerfileBuilder {
  id: DockerfileBuilderId;
  tools: ToolName[];
  /** Whether it can run here; why not, for the error or for auto's choice. */
  available(signal: AbortSignal): Promise<{ ok: true } | { ok: false; why: string }>;
  build(req: DockerfileRequest, run: BuildRun): Promise<BuiltImage>;
}
