// Reads a whole file system back through debugfs (names, inodes, xattrs, contents) so tests compare it with the tree written.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { debugfsBatch } from './helpers.js';

export interface ReadInode {
  ino: number;
  type: string;
  /** Permission bits with setuid/setgid/sticky. */
  perm: number;
  flags: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  blockcount: number;
  fileAcl: number;
  /** [seconds field as signed 32-bit, extra field] per timestamp. */
  times: Record<'atime' | 'ctime' | 'mtime' | 'crtime', [number, number]>;
  target?: string;
  device?: [number, number];
  xattrs: Map<string, Buffer>;
  sha256?: string;
}

export interface ReadEntry {
  /** Binary path from the root. */
  path: string;
  ino: number;
  /** st_mode as ls -p prints it (type and permissions). */
  mode: number;
}

export interface ReadTree {
  entries: ReadEntry[];
  inodes: Map<number, ReadInode>;
}

/** Splits a debugfs -f transcript into the output of each request. */
function perRequest(out: string, n: number): string[] {
  const parts = out.split(/^debugfs: .*\n/m).slice(1);
  if (parts.length !== n) throw new Error(`expected ${n} debugfs outputs, got ${parts.length}`);
  return parts;
}

function parseStat(ino: number, s: string): ReadInode {
  const num = (re: RegExp): number => {
    const m = re.exec(s);
    if (!m) throw new Error(`inode ${ino}: ${re} not in\n${s}`);
    return Number(m[1]);
  };
  const time = (name: string): [number, number] => {
    const m = new RegExp(`^ ?${name}: 0x([0-9a-f]+)(?::([0-9a-f]+))?`, 'm').exec(s);
    if (!m) throw new Error(`inode ${ino}: no ${name} in\n${s}`);
    return [parseInt(m[1]!, 16) | 0, m[2] ? parseInt(m[2], 16) : 0];
  };
  const tm = /Type: (\S+)/.exec(s);
  if (!tm) throw new Error(`inode ${ino}: no stat output:\n${s}`);
  const type = tm[1]!;
  const r: ReadInode = {
    ino,
    type,
    perm: parseInt(/Mode:\s+([0-7]+)/.exec(s)![1]!, 8),
    flags: parseInt(/Flags: 0x([0-9a-f]+)/.exec(s)![1]!, 16),
    uid: num(/User:\s+(-?\d+)/) >>> 0,
    gid: num(/Group:\s+(-?\d+)/) >>> 0,
    size: num(/Size: (\d+)/),
    links: num(/Links: (\d+)/),
    blockcount: num(/Blockcount: (\d+)/),
    fileAcl: num(/File ACL: (\d+)/),
    times: { atime: time('atime'), ctime: time('ctime'), mtime: time('mtime'), crtime: time('crtime') },
    xattrs: new Map(),
  };
  const fast = s.indexOf('Fast link dest: "');
  if (fast >= 0) r.target = s.substr(fast + 17, r.size);
  const dev = /Device major\/minor number: (\d+):(\d+)/.exec(s);
  if (dev) r.device = [Number(dev[1]), Number(dev[2])];
  return r;
}

/** Names of the xattrs from stat's "Extended attributes:" list ("  name (len)..." lines). */
function xattrNames(s: string): string[] {
  const at = s.indexOf('Extended attributes:\n');
  if (at < 0) return [];
  const names: string[] = [];
  for (const line of s.slice(at + 21).split('\n')) {
    const m = /^ {2}(\S+) \(\d+\)/.exec(line);
    if (!m) break;
    names.push(m[1]!);
  }
  return names;
}

/**
 * Walks the tree from the root by inode number (so any name works), stats every inode, reads every
 * xattr with ea_get -x, and hashes every regular file and slow symlink dumped to dumpDir.
 */
export function readTree(img: string, dumpDir: string): ReadTree {
  const entries: ReadEntry[] = [];
  let level: Array<[number, string]> = [[2, '']];
  const seen = new Set<number>([2]);
  while (level.length > 0) {
    const outs = perRequest(
      debugfsBatch(
        img,
        level.map(([ino]) => `ls -p <${ino}>`),
      ),
      level.length,
    );
    const next: Array<[number, string]> = [];
    level.forEach(([, dirPath], i) => {
      for (const m of outs[i]!.matchAll(/^\/(\d+)\/([0-7]{6})\/(-?\d+)\/(-?\d+)\/([^/]*)\/(\d*)\/\n/gm)) {
        const name = m[5]!;
        if (name === '.' || name === '..' || m[1] === '0') continue;
        const e = { path: `${dirPath}/${name}`, ino: Number(m[1]), mode: parseInt(m[2]!, 8) };
        entries.push(e);
        if ((e.mode & 0o170000) === 0o040000 && !seen.has(e.ino)) {
          seen.add(e.ino);
          next.push([e.ino, e.path]);
        }
      }
    });
    level = next;
  }
  const inos = [...new Set([2, ...entries.map((e) => e.ino)])].sort((a, b) => a - b);
  const stats = perRequest(
    debugfsBatch(
      img,
      inos.map((i) => `stat <${i}>`),
    ),
    inos.length,
  );
  const inodes = new Map<number, ReadInode>();
  const wanted: Array<[number, string]> = [];
  inos.forEach((ino, i) => {
    const r = parseStat(ino, stats[i]!);
    inodes.set(ino, r);
    for (const n of xattrNames(stats[i]!)) wanted.push([ino, n]);
  });
  if (wanted.length > 0) {
    const vals = perRequest(
      debugfsBatch(
        img,
        wanted.map(([ino, n]) => `ea_get -x <${ino}> ${n}`),
      ),
      wanted.length,
    );
    wanted.forEach(([ino, n], i) => {
      const m = /\(\d+\)(?: = ((?:[0-9a-f]{2} )*))?/.exec(vals[i]!);
      if (!m) throw new Error(`ea_get ${n} of ${ino}: ${vals[i]}`);
      inodes.get(ino)!.xattrs.set(n, Buffer.from((m[1] ?? '').replace(/ /g, ''), 'hex'));
    });
  }
  const dumps = [...inodes.values()].filter(
    (r) => r.type === 'regular' || (r.type === 'symlink' && r.target === undefined),
  );
  if (dumps.length > 0) {
    debugfsBatch(
      img,
      dumps.map((r) => `dump <${r.ino}> ${join(dumpDir, String(r.ino))}`),
    );
    for (const r of dumps) {
      const data = readFileSync(join(dumpDir, String(r.ino)));
      if (r.type === 'symlink') r.target = data.toString('latin1');
      else r.sha256 = createHash('sha256').update(data).digest('hex');
    }
  }
  return { entries, inodes };
}
