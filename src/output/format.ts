// The output-format interface: how the disk is assembled for a format, and how the finished disk becomes the file
// the user asked for. One file per format, registered in output/index.ts under the id --format spells.
import type { Env } from '../core/context.js';
import type { ConversionPlan } from '../core/plan.js';
import type { ToolName } from '../tools/index.js';

export interface OutputInput {
  /** The finished disk (or bare file system for the direct-kernel output) as the disk stage assembled it. */
  disk: string;
  /** The temporary name beside the final output (or in the work directory when nothing is kept). */
  dest: string;
  plan: ConversionPlan;
  /** Files the earlier stages made (kernel, initrd, vmlinux), by name. */
  files: ReadonlyMap<string, string>;
  env: Env;
}

/** What a format leaves: side files to rename into place with the output, and what a push takes. */
export interface OutputArtifact {
  /** [temporary, final] pairs, renamed before the output itself. */
  sideFiles: [string, string][];
  /** containerdisk: the qcow2 inside it. */
  containerDiskQcow2?: string;
}

export interface OutputFormat {
  id: string;
  /** File extensions that select this format. */
  extensions: string[];
  /**
   * How the disk is assembled for it: as raw or qcow2, in the temporary output itself (then nothing is copied) or
   * in a work file that write() converts.
   */
  assembly: { container: 'raw' | 'qcow2'; inPlace: boolean };
  /** Host tools write() runs (checked before any work). */
  tools: readonly ToolName[];
  /** No partitioned disk: the bare root file system plus kernel and initrd. */
  readonly directKernel?: boolean;
  write(i: OutputInput): Promise<OutputArtifact>;
}
