// The builder interface: what runs a distribution template on top of an image and hands back the result.
import type { Env } from '../core/context.js';
import type { BuilderId, BuildRecipe } from '../core/plan.js';
import type { SourceImage } from '../source/image.js';

/** What a build is made of: the image, the template with its values, and the reference the user gave (for names). */
export interface BuildInput {
  image: SourceImage;
  recipe: BuildRecipe;
  ref: string;
  /**
   * The platform the steps run as when it is not the host's (linux/arm64 on an amd64 host: binfmt_misc runs them
   * under emulation); docker and podman are told it, runc needs no word. Absent: the host's own.
   */
  platform?: string;
}

export interface Builder {
  id: BuilderId;
  /** Whether it can run here; why not, for the error or for auto's choice. */
  available(env: Env): Promise<{ ok: true } | { ok: false; why: string; cause?: unknown }>;
  /** The cached result for this image and recipe, without building; undefined when it would have to be built. */
  lookup(input: BuildInput, env: Env): Promise<{ image: SourceImage; ref: string } | undefined>;
  /** Builds (or takes from its cache) the bootable image; the result's layers replace the source's. */
  build(input: BuildInput, env: Env): Promise<{ image: SourceImage; cached: boolean; ref: string }>;
}
