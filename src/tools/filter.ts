// A host program as a stream filter (zstd -dc): input on its stdin, its stdout as chunks, stopped and waited for on every way out.
// No process outlives the read that started it.
import { PassThrough, pipeline } from 'node:stream';
import type { ToolName } from './index.js';
import { hasExited, spawnTool, stopProcess } from './process.js';

/** The decompressors img2vm runs as filters. */
export type FilterDecompressor = 'zstd' | 'xz' | 'bzip2';

/** The argv that makes a decompressor read stdin and write the decompressed bytes to stdout. */
export function decompressArgv(tool: FilterDecompressor): string[] {
  switch (tool) {
    case 'zstd':
      return ['--decompress', '--stdout', '--quiet'];
    case 'xz':
      return ['--decompress', '--stdout'];
    case 'bzip2':
      return ['--decompress', '--stdout'];
  }
}

/** The filter program failed: its exit status and the end of what it said. */
export class FilterError extends Error {
  readonly code = 'ERR_TOOL_FILTER';
  constructor(
    readonly tool: ToolName,
    readonly status: string,
    readonly stderr: string,
  ) {
    super(`${tool} failed (${status}): ${stderr.trim().split('\n').slice(-2).join(' | ') || 'no output'}`);
    this.name = 'FilterError';
  }
}

export interface Filter {
  /**
   * The program's output. It ends only once the program has exited with status 0 and the input ended; it throws
   * the input's own error when the input failed (the program saw a cut stream, which is not its fault), else a
   * FilterError, else stop()'s reason. However it ends, the program has exited by then.
   */
  chunks: AsyncGenerator<Buffer>;
  /** Kills the program and closes its stdin; a pending read rejects with reason once the program has exited. */
  stop(reason?: unknown): void;
  /** Resolves once the program has exited (at once if it never started). */
  exited: Promise<void>;
}

// Killed programs get this long between SIGTERM and SIGKILL; a decompressor has nothing to clean up.
const GRACE_MS = 1000;
/** Output held for a reader that has not come yet (a caller may start reading only after the program has exited). */
const OUT_AHEAD = 16 << 20;
// Only the end of stderr is quoted; a hostile stream must not grow it without bound.
const STDERR_MAX = 4096;

/**
 * Starts `tool argv` with `input` on its stdin (throws toolMissing, naming the package, when it is not installed).
 * The caller owns the input's source: stop() closes the program's stdin but cannot end a pending read of it.
 */
export function filterThrough(tool: ToolName, argv: readonly string[], input: AsyncIterable<Buffer>): Filter {
  const child = spawnTool(tool, argv, { stdio: 'pipe' });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < STDERR_MAX) stderr += d.toString('latin1');
  });
  let inputError: { e: unknown } | undefined;
  // Recorded at the moment the input fails, which is before the program can see its stdin end.
  async function* feed(): AsyncGenerator<Buffer> {
    try {
      for await (const c of input) yield c;
    } catch (e) {
      inputError = { e };
      throw e;
    }
  }
  // A program that exits early breaks the pipe: that EPIPE is told by its exit status instead.
  pipeline(feed(), child.stdin!, () => {});
  // Taken into a stream of our own from the start: execa destroys an unread stdout when the program exits, so a
  // filter read only later (after a short program has already ended) would lose what it wrote. Once this buffer is
  // full the program blocks on its stdout, as it would with nobody reading.
  const out = new PassThrough({ highWaterMark: OUT_AHEAD });
  pipeline(child.stdout!, out, () => {});
  let stopped: { reason: unknown } | undefined;
  const exited = new Promise<void>((resolve) => {
    if (hasExited(child) || child.pid === undefined) resolve();
    else child.once('exit', () => resolve());
  });
  const kill = async (): Promise<void> => {
    child.stdin!.destroy();
    // execa's promise waits for stdout to end, which an unread stdout never does.
    child.stdout!.destroy();
    out.destroy();
    await stopProcess(child, GRACE_MS);
  };
  const reasonOf = (r: unknown): unknown => r ?? new Error(`${tool} was stopped`);

  async function* read(): AsyncGenerator<Buffer> {
    let clean = false;
    try {
      try {
        for await (const c of out as AsyncIterable<Buffer>) {
          if (stopped) break;
          yield c;
          if (stopped) break;
        }
      } catch (e) {
        // stop() destroyed stdout under the read: that is the stop, not a failure of its own.
        if (!stopped) throw e;
      }
      if (stopped) {
        await kill();
        throw reasonOf(stopped.reason);
      }
      const r = await child;
      if (inputError) throw inputError.e;
      const late = stopped as { reason: unknown } | undefined;
      if (late) throw reasonOf(late.reason);
      if (r.exitCode !== 0) {
        const status =
          r.exitCode !== undefined
            ? `exit ${r.exitCode}`
            : r.signal
              ? `killed by ${r.signal}`
              : `could not start: ${r.shortMessage}`;
        throw new FilterError(tool, status, stderr);
      }
      clean = true;
    } finally {
      // Also the way out when the reader stops early (return()) or the output is bad: nothing may keep running.
      if (!clean) await kill();
    }
  }

  return {
    chunks: read(),
    stop: (reason) => {
      if (stopped) return;
      stopped = { reason };
      void kill();
    },
    exited,
  };
}
