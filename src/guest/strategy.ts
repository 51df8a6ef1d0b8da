// The guest-strategy interface: how a root file system becomes bootable (the distribution's own kernel and init
// from a template, img2vm's own, or the image's own). One file per strategy, registered in guest/index.ts under
// its --init id. Planning functions are pure; make() is the guest stage.
import type { LuksSecrets } from '../disk/luks/volume.js';
import type { Env } from '../core/context.js';
import type { ConvertOptions } from '../core/options.js';
import type {
  ContentFacts,
  ConversionPlan,
  GuestFile,
  GuestStrategyId,
  ImageFacts,
  PlanInputs,
  TreeFacts,
} from '../core/plan.js';
import type { KernelBundle } from '../kernel/index.js';
import type { RootTree } from '../rootfs/tree-edit.js';
import type { SourceImage } from '../source/image.js';
import type { ToolName } from '../tools/index.js';
import type { ArchDecision } from './arch.js';

/** The facts planning has so far: the options' files, then the image, the bootable tree, the measured content. */
export interface Known {
  inputs: PlanInputs;
  image?: ImageFacts;
  tree?: TreeFacts;
  content?: ContentFacts;
}

/** What the guest stage made: the image whose layers become the root, and what it learnt on the way. */
export interface Bootable {
  image: SourceImage;
  /** distro: the build that made `image`. */
  build?: NonNullable<TreeFacts['build']>;
  /** img2vm: the kernel img2vm boots. */
  kernel?: KernelBundle;
  /** For the stage line: built, cached, the kernel's version. */
  detail: string;
}

/** What a conversion knows that the plan must not show. */
export interface Secrets {
  password?: string;
  /** The LUKS2 passphrase and master key (--luks-password): never in the plan, a log or a helper's argv. */
  luks?: LuksSecrets;
}

export interface GuestStrategy {
  id: GuestStrategyId;
  /** What it will do and why, from what is known (pure; may refuse, e.g. an unsupported distribution). */
  /** arch: the guest's architecture and the host's, as planning decided them. */
  describe(o: ConvertOptions, known: Known, arch: ArchDecision): ConversionPlan['guest'];
  /**
   * What the kernel command line must say for the root's initramfs to unlock the LUKS2 volume of this UUID (pure):
   * extra arguments, and root= where it is not the ext4's UUID. Absent: the command line says nothing of it.
   */
  luksCmdline?(known: Known, luksUuid: string): { root?: string; args: string[] };
  /** The files it writes into the guest besides fstab and the password (pure). */
  guestFiles(o: ConvertOptions, known: Known, hostname: string): GuestFile[];
  /** Whether the kernel is the one in the image's /boot (distro, image) or one the strategy brings (img2vm). */
  kernelFromImage: boolean;
  /** The hint when the flattened root has no kernel. */
  noKernelHint: string;
  tools: readonly ToolName[];
  /**
   * The guest stage: makes the image bootable. With lookupOnly (img2vm plan) nothing is built or fetched:
   * undefined when it would have to be. With peek, a kernel from the archive may come back only resolved (its id,
   * kernel.peeked), for a disk cache to be asked first; such a result never goes further than that question.
   */
  make(
    plan: ConversionPlan,
    image: SourceImage,
    env: Env,
    o: { lookupOnly: boolean; peek?: boolean },
  ): Promise<Bootable | undefined>;
  /** Makes the work files its guest files come from (work:NAME), once the plan's files are known. */
  workFiles?(plan: ConversionPlan, made: Bootable, env: Env): Promise<void>;
  /** Carries out its `edit` guest files (the ones that need secrets or the image's account files). */
  edit?(tree: RootTree, plan: ConversionPlan, secrets: Secrets, env: Env): Promise<void>;
}
