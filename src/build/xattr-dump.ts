// Reads every extended attribute of a tree with one getfattr run (Node has no getxattr), keeping names and values as raw bytes.
import { spawnTool, stopProcess } from '../tools/process.js';
import { Img2vmError } from '../core/errors.js';

/** -R walks, -P never follows a symlink into another tree, -h reads a symlink's own attributes, -m - takes every namespace. */
export const GETFATTR_DUMP_ARGV: readonly string[] = ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'];

/** A real tree has a few KiB of them (file capabilities); this much is hostile, and would otherwise all be held in memory. */
const MAX_DUMP = 256 << 20;

/** Attributes the host's security module gives files; they describe the host, not the image. */
const HOST_ONLY = new Set(['security.selinux', 'security.apparmor', 'security.SMACK64']);

/** getfattr escapes a backslash and a newline (and nothing else) as \ooo; every other byte is itself. */
export function unescapeDump(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Parses getfattr's dump (latin1 binary string): "# file: PATH" then "NAME=0xHEX" lines. Paths are relative
 * to the directory it ran in ("." is that directory, returned as "").
 */
export function parseXattrDump(text: string): Map<string, [string, Buffer][]> {
  const out = new Map<string, [string, Buffer][]>();
  let cur: [string, Buffer][] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      const p = unescapeDump(line.slice(8));
      const rel = p === '.' ? '' : p.replace(/^\.\//, '');
      cur = [];
      out.set(rel, cur);
      continue;
    }
    if (!cur || line === '') continue;
    const eq = line.lastIndexOf('=');
    if (eq <= 0) continue;
    const name = unescapeDump(line.slice(0, eq));
    const v = line.slice(eq + 1);
    if (HOST_ONLY.has(name)) continue;
    let value: Buffer;
    if (v.startsWith('0x')) value = Buffer.from(v.slice(2), 'hex');
    else if (v.startsWith('"') && v.endsWith('"')) value = Buffer.from(unescapeDump(v.slice(1, -1)), 'latin1');
    else continue;
    cur.push([name, value]);
  }
  for (const [k, v] of out) if (v.length === 0) out.delete(k);
  return out;
}

/** Every xattr under root, by path relative to it (binary strings). */
export async function readTreeXattrs(root: string, signal?: AbortSignal): Promise<Map<string, [string, Buffer][]>> {
  signal?.throwIfAborted();
  const child = spawnTool('getfattr', GETFATTR_DUMP_ARGV, { stdio: 'pipe', cwd: root });
  const onAbort = () => void stopProcess(child);
  signal?.addEventListener('abort', onAbort, { once: true });
  const chunks: Buffer[] = [];
  const errs: Buffer[] = [];
  try {
    child.stderr?.on('data', (d: Buffer) => {
      if (errs.length < 64) errs.push(d);
    });
    let total = 0;
    for await (const c of child.stdout!) {
      total += (c as Buffer).length;
      if (total > MAX_DUMP) {
        await stopProcess(child);
        throw new Img2vmError(
          'badImage',
          `the built tree under ${root} has more than ${MAX_DUMP >> 20} MiB of extended attributes`,
          'the image or its packages set extended attributes on a vast number of files; build it with --builder docker',
        );
      }
      chunks.push(c as Buffer);
    }
    const r = await child;
    signal?.throwIfAborted();
    // getfattr exits 1 when it could not read some file; what it could read is still right.
    if (r.exitCode !== 0 && r.exitCode !== 1) {
      throw new Img2vmError(
        'toolFailed',
        `getfattr failed (exit ${r.exitCode}): ${Buffer.concat(errs).toString('utf8').trim().slice(0, 300)}`,
        `command: getfattr ${GETFATTR_DUMP_ARGV.join(' ')} (in ${root})`,
      );
    }
    return parseXattrDump(Buffer.concat(chunks).toString('latin1'));
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
