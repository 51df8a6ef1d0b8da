// Long-running host programs (QEMU): started here so tools/ stays the only place that spawns, owned by the caller.
import { execa, type ResultPromise } from 'execa';
import { requireTool, type ToolName } from './index.js';

export interface SpawnOptions {
  /**
   * 'pipe': the caller reads stdout/stderr and writes stdin (headless runs).
   * 'inherit': the child owns the terminal (an interactive serial console).
   */
  stdio: 'pipe' | 'inherit';
  env?: Record<string, string>;
  cwd?: string;
  /**
   * The child is killed by the kernel when img2vm dies, however it dies (SIGKILL included): a VM must never
   * outlive the process that owns it. Runs the tool through util-linux's setpriv --pdeathsig.
   */
  dieWithParent?: boolean;
}

export type ToolProcess = ResultPromise<{ reject: false; buffer: false; encoding: 'buffer' }>;

/**
 * Starts a host tool and returns at once. Nothing is buffered (a console runs for minutes) and nothing
 * throws on a non-zero exit: the caller decides what an exit means and must stop the child (stopProcess).
 */
export function spawnTool(name: ToolName, argv: readonly string[], opts: SpawnOptions): ToolProcess {
  const bin = requireTool(name);
  const [file, args] = opts.dieWithParent
    ? [requireTool('setpriv'), ['--pdeathsig', 'KILL', '--', bin, ...argv]]
    : [bin, [...argv]];
  return execa(file, args, {
    stdio: opts.stdio === 'inherit' ? 'inherit' : ['pipe', 'pipe', 'pipe'],
    env: { LC_ALL: 'C', ...opts.env },
    cwd: opts.cwd,
    reject: false,
    buffer: false,
    encoding: 'buffer',
    // execa kills the child if node exits first (normal exit or a signal node dies of).
    cleanup: true,
  }) as ToolProcess;
}

/** Whether the child has exited (its exit code or signal is known). */
export function hasExited(child: ToolProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Stops a child: SIGTERM, then SIGKILL after graceMs; resolves once it has exited. */
export async function stopProcess(child: ToolProcess, graceMs = 3000): Promise<void> {
  if (hasExited(child) || child.pid === undefined) {
    await child.catch(() => undefined);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!hasExited(child)) child.kill('SIGKILL');
  }, graceMs);
  try {
    await exited;
    await child.catch(() => undefined);
  } finally {
    clearTimeout(timer);
  }
}
