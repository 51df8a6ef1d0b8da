// The output-format interface and the registry of formats, keyed by the id the CLI spells.
import type { RunContext } from '../core/context.js';

export interface OutputFormat {
  id: string;
  /** File extensions that select this format. */
  extensions: string[];
  /** Turns the finished raw disk at rawPath into dest (a temporary name beside the final output). */
  write(rawPath: string, dest: string, ctx: RunContext, opts: { compress?: boolean }): Promise<void>;
  /** True when the raw work file can simply be renamed into place. */
  readonly isRaw?: boolean;
  /** No disk at all: the bare root file system plus kernel and initrd (the pipeline writes these itself). */
  readonly directKernel?: boolean;
}
