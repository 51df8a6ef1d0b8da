// Reads /proc/sys/fs/binfmt_misc (what the host's kernel runs through which interpreter) for planning to judge.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';

/** The status file and every handler's file, as text; no status when binfmt_misc is not mounted there. */
export function readBinfmtFiles(dir = BINFMT_DIR): { status?: string; entries: Record<string, string> } {
  let status: string;
  try {
    status = readFileSync(join(dir, 'status'), 'utf8');
  } catch {
    return { entries: {} };
  }
  const entries: Record<string, string> = {};
  for (const name of readdirSync(dir)) {
    if (name === 'status' || name === 'register') continue;
    try {
      entries[name] = readFileSync(join(dir, name), 'utf8');
    } catch {
      // Unregistered between the listing and the read: as if it were not there.
    }
  }
  return { status, entries };
}
