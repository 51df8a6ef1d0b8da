// Runs `podman build` so that an interrupt leaves nothing behind: the running step is killed, and podman then cleans up as after any failed step.
//
// Signalled itself, podman build exits at once and leaves its working container, the step's runc
// container (still running) and its bundle behind. A step that fails is different: podman removes
// all of that (--force-rm is its default). So an abort kills the step's container, which podman
// created under the TMPDIR img2vm gave it, and lets podman finish.
import { mkdir } from 'node:fs/promises';
import { run } from '../tools/index.js';
import { spawnTool, stopProcess } from '../tools/process.js';
import { runcDeleteArgv, runcKillArgv, runcListArgv } from './runtime-spec.js';

/** How long podman may take to clean up after its step was killed, before it is killed too. */
const CLEANUP_GRACE_MS = 60_000;

export function podmanExternalArgv(): string[] {
  return ['ps', '--all', '--external', '--quiet', '--no-trunc'];
}

export function podmanRemoveContainerArgv(id: string): string[] {
  return ['rm', '--force', id];
}

/** runc containers (podman's steps) whose bundle is under dir. */
export async function stepContainers(dir: string): Promise<string[]> {
  const r = await run('runc', runcListArgv(), { reject: false });
  if (r.exitCode !== 0) return [];
  try {
    const list = (JSON.parse(r.stdout || 'null') as { id?: unknown; bundle?: unknown }[] | null) ?? [];
    return list
      .filter((c) => typeof c.id === 'string' && typeof c.bundle === 'string' && c.bundle.startsWith(`${dir}/`))
      .map((c) => c.id as string);
  } catch {
    return [];
  }
}

async function externalContainers(): Promise<Set<string>> {
  const r = await run('podman', podmanExternalArgv(), { reject: false });
  return new Set(
    r.exitCode === 0
      ? r.stdout
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
      : [],
  );
}

function lines(s: NodeJS.ReadableStream | null | undefined, onLine: (l: string) => void): void {
  let buf = '';
  s?.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.search(/[\r\n]/)) >= 0) {
      if (i > 0) onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  s?.on('end', () => buf && onLine(buf));
}

/**
 * Runs podman build with argv; its steps' bundles go to tmpDir (private to this build). Resolves with the
 * exit code; on abort, rejects with the signal's reason once podman has cleaned up (or was made to).
 */
export async function runPodmanBuild(
  argv: string[],
  tmpDir: string,
  signal: AbortSignal,
  onLine: (l: string) => void,
): Promise<number> {
  signal.throwIfAborted();
  await mkdir(tmpDir, { recursive: true });
  const before = await externalContainers();
  const child = spawnTool('podman', argv, { stdio: 'pipe', env: { TMPDIR: tmpDir } });
  child.stdin?.end();
  lines(child.stdout, onLine);
  lines(child.stderr, onLine);
  let killer: NodeJS.Timeout | undefined;
  let forced = false;
  const onAbort = () => {
    const started = Date.now();
    const tick = async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (Date.now() - started > CLEANUP_GRACE_MS) {
        forced = true;
        await stopProcess(child, 3000);
        return;
      }
      for (const id of await stepContainers(tmpDir)) await run('runc', runcKillArgv(id), { reject: false });
      killer = setTimeout(() => void tick(), 250);
    };
    void tick();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const r = await child;
    if (signal.aborted) {
      // Only when podman had to be killed: what it left, found by where it put it and what was not there before.
      for (const id of await stepContainers(tmpDir)) await run('runc', runcDeleteArgv(id), { reject: false });
      if (forced) {
        // (A build another process started meanwhile would lose its container too: this is the last resort.)
        for (const id of await externalContainers())
          if (!before.has(id)) await run('podman', podmanRemoveContainerArgv(id), { reject: false });
      }
      throw signal.reason;
    }
    return r.exitCode ?? -1;
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (killer) clearTimeout(killer);
  }
}
