// Shared helpers of the end-to-end tests: the CLI, Docker fixtures, and reading a disk's root file system back.
import { execa, type ResultPromise } from 'execa';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { RootTree } from '../../src/rootfs/tree-edit.js';
import type { DirNode, Node } from '../../src/rootfs/tree.js';

export const REPO = resolve(import.meta.dirname, '..', '..');
export const BIN = join(REPO, 'bin', 'img2vm');

export async function img2vm(args: string[], opts: { env?: Record<string, string>; timeout?: number } = {}) {
  return execa(BIN, args, {
    reject: false,
    env: { CI: 'true', ...opts.env },
    timeout: opts.timeout ?? 20 * 60_000,
    all: true,
  });
}

export async function sh(cmd: string, args: string[], input?: string) {
  const r = await execa(cmd, args, { input, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.exitCode}):\n${r.all}`);
  return r;
}

/** Starts dockerd if needed and builds the debootstrap fixture image (cached). */
export async function debianFixture(image: string, suite = 'bookworm'): Promise<string> {
  await sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);
  await sh('bash', [join(REPO, 'fixtures', 'debian-image.sh'), image, suite]);
  return image;
}

export async function dockerBuild(tag: string, dockerfile: string): Promise<void> {
  await sh('docker', ['build', '--network', 'host', '-q', '-t', tag, '-'], dockerfile);
}

export interface Meta {
  type: 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  mtime?: number;
  sha256?: string;
  target?: string;
  ino?: number;
  nlink?: number;
}

function typeOf(st: import('node:fs').Stats): Meta['type'] {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

/** Walks a tree into path → metadata (content hashed). */
export async function snapshotTree(root: string): Promise<Map<string, Meta>> {
  const out = new Map<string, Meta>();
  const walk = async (rel: string) => {
    for (const name of await readdir(join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = await lstat(p);
      const m: Meta = {
        type: typeOf(st),
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        ino: st.ino,
        nlink: st.nlink,
      };
      if (m.type === 'file') {
        m.size = st.size;
        m.mtime = Math.floor(st.mtimeMs / 1000);
        m.sha256 = createHash('sha256')
          .update(await readFile(p))
          .digest('hex');
      }
      if (m.type === 'symlink') m.target = await readlink(p);
      out.set(r, m);
      if (m.type === 'dir') await walk(r);
    }
  };
  await walk('');
  return out;
}

/**
 * Reads an ext4 file system inside a raw image back without mounting: debugfs rdump for content and
 * times, then `ls -p` per directory for the exact mode bits (rdump loses setuid when it chowns).
 */
export async function readExt4(image: string, offset: number, dest: string): Promise<Map<string, Meta>> {
  await mkdir(dest, { recursive: true });
  const dev = `${image}?offset=${offset}`;
  await sh('debugfs', ['-R', `rdump / ${dest}`, dev]);
  const tree = await snapshotTree(dest);
  const dirs = ['', ...[...tree].filter(([, m]) => m.type === 'dir').map(([p]) => p)];
  const script = dirs.map((d) => `ls -p "/${d}"`).join('\n');
  const r = await execa('debugfs', ['-f', '-', dev], { input: script, reject: false });
  let cur = '';
  for (const line of r.stdout.split('\n')) {
    const cmd = /^debugfs:\s+ls -p "\/(.*)"$/.exec(line);
    if (cmd) {
      cur = cmd[1]!;
      continue;
    }
    // /inode/mode/uid/gid/name/size/
    const m = /^\/(\d+)\/(\d+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line);
    if (!m || m[5] === '.' || m[5] === '..') continue;
    const path = cur ? `${cur}/${m[5]}` : m[5]!;
    let e = tree.get(path);
    if (!e) {
      // rdump skips fifos, sockets and device nodes: take them from the listing.
      const fmt = Number.parseInt(m[2]!, 8) & 0o170000;
      const type = ({ 0o010000: 'fifo', 0o020000: 'char', 0o060000: 'block', 0o140000: 'socket' } as const)[
        fmt as 0o010000
      ];
      if (type) tree.set(path, (e = { type, mode: 0, uid: 0, gid: 0 }));
    }
    if (e) {
      e.mode = Number.parseInt(m[2]!, 8) & 0o7777;
      e.uid = Number(m[3]);
      e.gid = Number(m[4]);
      e.ino = Number(m[1]);
    }
  }
  return tree;
}

/** Lists the differences between two snapshots, ignoring inode numbers (hard links are compared as groups). */
/** A flattened tree as path → metadata (content hashed from its store), comparable with snapshotTree's. */
export async function treeMeta(tree: RootTree): Promise<Map<string, Meta>> {
  const out = new Map<string, Meta>();
  const kinds: Record<Node['kind'], Meta['type']> = {
    file: 'file',
    dir: 'dir',
    symlink: 'symlink',
    fifo: 'fifo',
    char: 'char',
    block: 'block',
    socket: 'socket',
  };
  const walk = async (dir: DirNode, rel: string) => {
    for (const [bname, n] of [...dir.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const name = Buffer.from(bname, 'latin1').toString('utf8');
      const r = rel ? `${rel}/${name}` : name;
      const m: Meta = {
        type: kinds[n.kind],
        mode: n.meta.mode,
        uid: n.meta.uid,
        gid: n.meta.gid,
        nlink: tree.nameCount(n),
      };
      if (n.kind === 'file') {
        m.size = n.size;
        m.mtime = n.meta.mtime.sec;
        const h = createHash('sha256');
        for await (const c of n.data.store.read(n.data)) h.update(c);
        m.sha256 = h.digest('hex');
      }
      if (n.kind === 'symlink') m.target = Buffer.from(n.target, 'latin1').toString('utf8');
      out.set(r, m);
      if (n.kind === 'dir') await walk(n, r);
    }
  };
  await walk(tree.root, '');
  return out;
}

export function diffTrees(
  expected: Map<string, Meta>,
  actual: Map<string, Meta>,
  ignore: (p: string) => boolean,
): string[] {
  const diffs: string[] = [];
  for (const [p, e] of expected) {
    if (ignore(p)) continue;
    const a = actual.get(p);
    if (!a) {
      diffs.push(`missing: ${p}`);
      continue;
    }
    for (const k of ['type', 'mode', 'uid', 'gid', 'size', 'mtime', 'sha256', 'target'] as const) {
      if (e[k] !== a[k]) diffs.push(`${p}: ${k} expected ${e[k]} got ${a[k]}`);
    }
  }
  for (const p of actual.keys()) if (!ignore(p) && !expected.has(p)) diffs.push(`extra: ${p}`);
  return diffs;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Starts Debian's docker-registry on 127.0.0.1 with its storage (and optionally htpasswd auth) below dir;
 * resolves once /v2/ answers. The caller kills the returned process.
 */
export async function startRegistry(dir: string, htpasswd?: string): Promise<{ host: string; process: ResultPromise }> {
  const port = await freePort();
  await mkdir(join(dir, 'data'), { recursive: true });
  const auth = htpasswd ? `auth:\n  htpasswd:\n    realm: img2vm-e2e\n    path: ${htpasswd}\n` : '';
  await writeFile(
    join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: img2vm-e2e\n${auth}`,
  );
  const p = execa('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], {
    reject: false,
    all: true,
    buffer: false,
  });
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => undefined);
    if (r && (r.status === 200 || r.status === 401)) return { host: `127.0.0.1:${port}`, process: p };
    await new Promise((res) => setTimeout(res, 100));
  }
  p.kill('SIGTERM');
  throw new Error(`docker-registry in ${dir} did not start`);
}
