// A full or read-only file system as one message at every write site: what was being written, on which file system,
// how much is free there and how much the run needs, and where to point img2vm instead.
import { readFileSync, realpathSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { Img2vmError } from './errors.js';
import { formatSize } from './units.js';

/** Where a write went; each has its own way out. */
export type WriteArea = 'output' | 'work' | 'cache';

export interface WriteSite {
  area: WriteArea;
  /** What was being written, e.g. "the disk", "the image archive's files", "blob sha256:…". */
  what: string;
  /** The file (or a directory) written; its file system is the one reported. */
  path: string;
  /** Bytes the run needs there, when known (the disk's data, the blob sizes). */
  needBytes?: number;
  /** What needBytes stands for, when a bare number would puzzle ("the disk's data; the disk is 4G"). */
  needNote?: string;
}

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);
const NO_SPACE_TEXT = /No space left on device|Disk quota exceeded/i;

/** A write failure because the file system (or the user's quota) is full; tools' stderr counts too. */
export function isNoSpace(e: unknown): boolean {
  if (!e || typeof e !== 'object') return false;
  if (NO_SPACE.has((e as NodeJS.ErrnoException).code ?? '')) return true;
  // A tool that hit it says so on stderr, which its toolFailed error quotes; a wrapped failure keeps it as cause.
  return e instanceof Img2vmError && (NO_SPACE_TEXT.test(e.message) || isNoSpace(e.cause));
}

export function isReadOnly(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === 'EROFS';
}

/** The mount point holding path (the longest mount that is a prefix of its real path), if /proc says. */
export function mountPointOf(path: string): string | undefined {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    try {
      real = realpathSync(dirname(path));
    } catch {
      return undefined;
    }
  }
  let best: string | undefined;
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const mp = line
        .split(' ')[4]
        ?.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
      if (!mp) continue;
      if ((real === mp || real.startsWith(mp.endsWith('/') ? mp : `${mp}/`)) && mp.length > (best?.length ?? -1))
        best = mp;
    }
  } catch {
    return undefined;
  }
  return best;
}

/** Bytes an unprivileged writer may still use on path's file system. */
export function freeBytes(path: string): number | undefined {
  for (const p of [path, dirname(path)]) {
    try {
      const s = statfsSync(p);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      /* try the parent: the file itself may be gone */
    }
  }
  return undefined;
}

const WAYS_OUT: Record<WriteArea, string> = {
  output: 'free space there, or write the output to another file system (-o)',
  work: 'free space there, or set TMPDIR to a directory on a larger file system',
  cache: 'free space there (img2vm cache prune), or set XDG_CACHE_HOME to a directory on a larger file system',
};

const AREA_NAMES: Record<WriteArea, string> = {
  output: 'the output directory',
  work: 'the work directory (TMPDIR)',
  cache: 'the cache',
};

/** The directory the user chose: TMPDIR, not the run's own work directory in it (which is gone when this is read). */
function shownPath(site: WriteSite): string {
  return site.area === 'work'
    ? site.path.replace(/\/img2vm-(?:plan-)?\d+\.[0-9a-f]{8}-[^/]+(?:\/.*)?$/, '') || '/'
    : site.path;
}

/** The one message for a full file system at a write site. */
export function noSpaceError(site: WriteSite, cause?: unknown): Img2vmError {
  const mp = mountPointOf(site.path);
  const free = freeBytes(site.path);
  const fs = mp ? `the file system at ${mp}` : 'its file system';
  const need =
    site.needBytes !== undefined
      ? `; it needs about ${formatSize(site.needBytes)}${site.needNote ? ` (${site.needNote})` : ''}`
      : '';
  return new Img2vmError(
    'outputNotWritable',
    `no space left for ${site.what} in ${AREA_NAMES[site.area]} ${shownPath(site)}: ${fs} has ${free !== undefined ? formatSize(free) : 'nothing'} free${need}`,
    `${WAYS_OUT[site.area]}; nothing partial was kept`,
    { cause },
  );
}

export function readOnlyError(site: WriteSite, cause?: unknown): Img2vmError {
  const mp = mountPointOf(site.path);
  return new Img2vmError(
    'outputNotWritable',
    `cannot write ${site.what}: ${AREA_NAMES[site.area]} ${shownPath(site)} is on a read-only file system${mp ? ` (${mp})` : ''}`,
    WAYS_OUT[site.area].replace(/^free space there, or /, ''),
    { cause },
  );
}

/** The resource error a write failure means at this site, or the failure itself when it is something else. */
export function asWriteError(e: unknown, site: WriteSite): unknown {
  if (isNoSpace(e))
    return e instanceof Img2vmError && /^no space left for /.test(e.message) ? e : noSpaceError(site, e);
  if (isReadOnly(e)) return readOnlyError(site, e);
  return e;
}
