// The output-format interface: turns the finished raw disk into the file the user asked for. One file per
// format, registered in output/index.ts under the id --format spells.
import type { RunContext } from '../core/context.js';
import type { ConversionPlan } from '../core/plan.js';

export interface OutputInput {
  /** The finished raw disk (or bare file system for the direct-kernel output). */
  raw: string;
  /** The temporary name beside the final output (or in the work directory when nothing is kept). */
  dest: string;
  ctx: RunContext;
  plan: ConversionPlan;
  /** Files the earlier steps produced (kernel, initrd, vmlinux), by name. */
  files: ReadonlyMap<string, string>;
  /** Side files to rename into place together with the output: [temporary, final]. */
  commits: [string, string][];
}

/** What a format leaves for the sinks that run after it (a push reuses the containerDisk's qcow2). */
export interface OutputArtifact {
  containerDiskQcow2?: string;
}

export interface OutputFormat {
  id: string;
  /** File extensions that select this format. */
  extensions: string[];
  write(i: OutputInput): Promise<OutputArtifact | void>;
  /** True when the raw work file is the output itself (built beside the target and renamed). */
  readonly isRaw?: boolean;
  /** No partitioned disk: the bare root file system plus kernel and initrd. */
  readonly directKernel?: boolean;
}
