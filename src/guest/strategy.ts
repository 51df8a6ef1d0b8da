// The guest-strategy interface: how a root file system becomes bootable (the distribution's own kernel and init
// from a template, or the image's own). One file per strategy, registered in guest/index.ts under its --init id.
import type { ConversionRun } from '../core/conversion.js';
import type { ConvertOptions } from '../core/options.js';
import type { ConversionPlan, GuestFile, GuestStrategyId, ImageFacts } from '../core/plan.js';
import type { ToolName } from '../tools/index.js';

export interface GuestStrategy {
  id: GuestStrategyId;
  /** What it will do and why, from what is known (pure; may refuse, e.g. an unsupported distribution). */
  describe(o: ConvertOptions, facts: ImageFacts): ConversionPlan['guest'];
  /** The files it writes into the guest besides fstab and the password (pure). */
  guestFiles(o: ConvertOptions, facts: ImageFacts, hostname: string): GuestFile[];
  /** Whether the kernel is the one in the image's /boot (distro, image) or one the strategy brings (img2vm). */
  kernelFromImage: boolean;
  /** The hint when the flattened root has no kernel. */
  noKernelHint: string;
  tools: readonly ToolName[];
  /** Makes the image bootable (may replace run.image), recording what it learnt in run.facts; returns the stage detail. */
  apply(r: ConversionRun): Promise<string>;
  /** Carries out one of its `edit` guest files (the ones that need secrets or the image's account files). */
  edit?(r: ConversionRun, f: GuestFile): Promise<void>;
  /** Makes the files its guest files come from (work:NAME), once the root is flattened and the plan final. */
  beforeConfigure?(r: ConversionRun): Promise<void>;
}
