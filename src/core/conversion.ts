// The state one conversion carries from step to step while apply() runs the plan.
import type { RunContext } from './context.js';
import type { ConvertOptions } from './options.js';
import type { ConversionPlan, ImageFacts, PlanStep } from './plan.js';
import type { StageId } from './events.js';
import type { SourceImage } from '../source/image.js';
import type { DockerClient } from '../source/docker-api.js';
import type { BlockTarget } from '../disk/target.js';
import type { Ext4Writer } from '../disk/ext4/index.js';
import type { RootTree } from '../rootfs/tree-edit.js';
import type { DirNode } from '../rootfs/tree.js';

export interface ConversionRun {
  readonly options: ConvertOptions;
  /** Re-derived from options and facts whenever a step learns something (replan). */
  plan: ConversionPlan;
  facts: ImageFacts;
  readonly ctx: RunContext;
  /** Seconds since 1970 for every time img2vm itself writes: SOURCE_DATE_EPOCH, else when the run started. */
  readonly epoch: number;
  /** The image whose layers become the root (the guest build replaces the source's). */
  image?: SourceImage;
  /** The disk being written (a raw file, or the output's qcow2 itself), opened by the first step that writes. */
  target?: BlockTarget;
  /** The flattened root and the ext4 writer its file contents went into; /boot's tree once it is taken out. */
  tree?: RootTree;
  rootWriter?: Ext4Writer;
  bootTree?: DirNode;
  /** Files copied out of the guest before its file system was made, by the name the plan gives them. */
  readonly exported: Map<string, string>;
  /** The temporary output beside the target (or in the work directory when nothing is kept). */
  readonly tmpOut: string;
  /** Where the output goes in the end; null when a containerDisk is only pushed. */
  readonly outPath: string | null;
  /** Files to rename into place, all together, once every step succeeded: [temporary, final]. */
  readonly commits: [string, string][];
  /** The final paths renamed into place so far (the run is complete once the first is). */
  readonly renamed: string[];
  /** What the output step produced, for sinks that run after it (push). */
  artifact?: { containerDiskQcow2?: string };
  pushed?: { ref: string; digest: string };
  docker(): DockerClient;
  /** Recomputes the plan from the options and the facts known now. */
  replan(): void;
}

/** One step implementation, registered under the id the plan names; returns a short detail for the stage line. */
export type StepFn = (run: ConversionRun, step: PlanStep) => Promise<string | void>;

export type StepRegistry = Partial<Record<StageId, Record<string, StepFn>>>;
