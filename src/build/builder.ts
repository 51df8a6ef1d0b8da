// The builder interface: what runs a distribution template on top of an image and hands back the result.
import type { ConversionRun } from '../core/conversion.js';
import type { BuilderId } from '../core/plan.js';
import type { SourceImage } from '../source/image.js';
import type { DistroRecipe } from '../guest/distros.js';

export interface Builder {
  id: BuilderId;
  /** Whether it can run here; why not, for the error or for auto's choice. */
  available(r: ConversionRun): Promise<{ ok: true } | { ok: false; why: string; cause?: unknown }>;
  /** The cached result for this image and recipe, without building; undefined when it would have to be built. */
  lookup(r: ConversionRun, recipe: DistroRecipe): Promise<{ image: SourceImage; ref: string } | undefined>;
  /** Builds (or takes from its cache) the bootable image; the result's layers replace the source's. */
  build(r: ConversionRun, recipe: DistroRecipe): Promise<{ image: SourceImage; cached: boolean; ref: string }>;
}
