// Names of what a run leaves on disk while it works (work directories, temporary outputs) and the sweep that removes
// those of killed runs: each name carries the owner's pid and a tag of its host, and only a dead owner's are removed.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Whether a process of this pid exists (EPERM: it does, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * 8 hex digits of this host's name. Another host (or a container with its own pid numbers) sharing the directory
 * has another tag, so its live pids are never judged by ours.
 */
export function hostTag(): string {
  return createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
}

/** The owner part of a leftover's name: PID.HOSTTAG. */
export function ownerTag(pid = process.pid): string {
  return `${pid}.${hostTag()}`;
}

/** The prefix mkdtemp completes for a run's work directory in TMPDIR (kind: '' for convert, 'plan-' for plan). */
export function workDirPrefix(kind = ''): string {
  return `img2vm-${kind}${ownerTag()}-`;
}

/** The temporary name beside a final output (and its side files): hidden, with the owner in it. */
export function tempBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.img2vm-${ownerTag()}.tmp`);
}

const WORK_DIR = /^img2vm-(?:plan-)?(\d+)\.([0-9a-f]{8})-[A-Za-z0-9]{6}$/;
const TEMP_OUTPUT = /^\..+\.img2vm-(\d+)\.([0-9a-f]{8})\.tmp$/;

/** Whether a leftover's name says it belongs to a process of this host that is gone. */
export function deadOwner(name: string, re: RegExp): boolean {
  const m = re.exec(name);
  if (!m) return false;
  const pid = Number(m[1]);
  return m[2] === hostTag() && Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid);
}

async function sweep(dir: string, re: RegExp): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const gone: string[] = [];
  for (const n of names) {
    if (!deadOwner(n, re)) continue;
    await rm(join(dir, n), { recursive: true, force: true }).then(
      () => gone.push(join(dir, n)),
      () => undefined,
    );
  }
  return gone;
}

/** Removes the work directories killed runs left in tmp; returns what was removed. */
export function sweepWorkDirs(tmp: string): Promise<string[]> {
  return sweep(tmp, WORK_DIR);
}

/** Removes the temporary outputs (and side files) killed runs left in an output directory. */
export function sweepTempOutputs(dir: string): Promise<string[]> {
  return sweep(dir, TEMP_OUTPUT);
}
