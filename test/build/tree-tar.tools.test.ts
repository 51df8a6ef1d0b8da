// The runc builder's layer writer, read back as the runc builder unpacks a layer: owners, modes, binary xattrs, hard links, devices, sparse files, raw names.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  createReadStream,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SETFATTR_RESTORE_ARGV, xattrRestoreScript } from '../../src/rootfs/xattr.js';
import { ByteSource, TarReader } from '../../src/rootfs/tar.js';
import { devNumbers, writeTreeTar } from '../../src/build/tree-tar.js';
import { readTreeXattrs } from '../../src/build/xattr-dump.js';
import { applyLayers } from '../rootfs/helpers.js';

const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const BINARY = Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x3d]);
const T = 1_600_000_000;

let dir: string;
let src: string;
let server: Server | undefined;

/** Paths as Buffers so non-UTF-8 names work. */
const b = (...parts: (string | Buffer)[]): Buffer =>
  Buffer.concat(
    parts.map((p, i) =>
      Buffer.concat([i ? Buffer.from('/') : Buffer.alloc(0), Buffer.isBuffer(p) ? p : Buffer.from(p)]),
    ),
  );
const RAW_NAME = Buffer.from([0x6e, 0xff, 0x6c, 0x5c, 0x0a, 0x78]); // n\xffl\\\nx: not UTF-8, a backslash, a newline

function setx(path: Buffer, name: string, value: Buffer): void {
  // setfattr --restore takes the path with its bytes escaped, so names that are not UTF-8 get there intact.
  execFileSync('setfattr', SETFATTR_RESTORE_ARGV, {
    input: xattrRestoreScript([{ path: b(src, path).toString('latin1'), attrs: [[name, value]] }]),
  });
}

async function makeTree(): Promise<void> {
  mkdirSync(join(src, 'etc'), { mode: 0o755 });
  writeFileSync(join(src, 'etc', 'hostname'), 'box\n');
  mkdirSync(join(src, 'tmp'));
  chmodSync(join(src, 'tmp'), 0o1777);
  mkdirSync(join(src, 'home', 'u'), { recursive: true });
  chmodSync(join(src, 'home', 'u'), 0o700);
  chownSync(join(src, 'home', 'u'), 1000, 1000);
  writeFileSync(join(src, 'home', 'u', 'odd-size'), Buffer.alloc(1234, 7));
  chownSync(join(src, 'home', 'u', 'odd-size'), 1000, 1001);
  mkdirSync(join(src, 'usr', 'bin'), { recursive: true });
  writeFileSync(join(src, 'usr', 'bin', 'ping'), 'ELF ping');
  chmodSync(join(src, 'usr', 'bin', 'ping'), 0o4755);
  // Hard links: three names, one inode; its capability belongs to the inode.
  linkSync(join(src, 'usr', 'bin', 'ping'), join(src, 'usr', 'bin', 'ping4'));
  linkSync(join(src, 'usr', 'bin', 'ping'), join(src, 'etc', 'ping6'));
  writeFileSync(join(src, 'empty'), '');
  // Sparse: 16 MiB apparent, one 4 KiB block of data at 8 MiB; and one that is a hole from end to end.
  const fd = openSync(join(src, 'sparse'), 'w');
  writeSync(fd, Buffer.alloc(4096, 0xab), 0, 4096, 8 << 20);
  closeSync(fd);
  execFileSync('truncate', ['-s', String(16 << 20), join(src, 'sparse')]);
  execFileSync('truncate', ['-s', String(3 << 20), join(src, 'all-hole')]);
  mkdirSync(join(src, 'dev'));
  execFileSync('mknod', [join(src, 'dev', 'null'), 'c', '1', '3']);
  execFileSync('mknod', [join(src, 'dev', 'loop0'), 'b', '7', '0']);
  execFileSync('mknod', [join(src, 'dev', 'big'), 'c', '259', '70000']);
  execFileSync('mkfifo', [join(src, 'dev', 'fifo')]);
  chmodSync(join(src, 'dev', 'null'), 0o666);
  symlinkSync('usr/bin', join(src, 'bin'));
  const longTarget = `${'t'.repeat(150)}/x`;
  symlinkSync(longTarget, join(src, 'long-link'));
  // A path longer than ustar's 100 + 155 can split: PAX path.
  const deep = join(src, 'd'.repeat(120), 'e'.repeat(120), 'f'.repeat(50));
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(deep, 'leaf-with-a-long-name'.repeat(4)), 'deep');
  // A name that is not UTF-8 (and has a backslash and a newline, which getfattr escapes).
  writeFileSync(b(src, RAW_NAME), 'raw');
  setx(RAW_NAME, 'user.raw', BINARY);
  setx(Buffer.from('usr/bin/ping'), 'security.capability', CAP);
  setx(Buffer.from('etc'), 'trusted.dir', BINARY);
  setx(Buffer.from('home/u/odd-size'), 'user.big', Buffer.alloc(3000, 0x80));
  // A socket cannot be in a tar: it is left out with a warning. (Node unlinks it on close, so it stays open.)
  server = createServer();
  await new Promise<void>((res) => server!.listen(join(src, 'sock'), res));
  for (const p of ['etc/hostname', 'home/u/odd-size', 'usr/bin/ping', 'empty', 'sparse'])
    utimesSync(join(src, p), T, T + 5);
}

interface Seen {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime?: number;
  size?: number;
  content?: string;
  target?: string;
  rdev?: number;
  /** Index of the first path with the same inode, for hard links. */
  inode?: string;
}

function snapshot(root: string): Map<string, Seen> {
  const out = new Map<string, Seen>();
  const inodes = new Map<number, string>();
  const walk = (rel: Buffer) => {
    const abs = rel.length ? b(root, rel) : Buffer.from(root);
    for (const n of (readdirSync(abs, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare)) {
      const r = rel.length ? b(rel, n) : n;
      const st = lstatSync(b(root, r));
      const key = r.toString('latin1');
      const type = st.isFile()
        ? 'file'
        : st.isDirectory()
          ? 'dir'
          : st.isSymbolicLink()
            ? 'symlink'
            : st.isCharacterDevice()
              ? 'char'
              : st.isBlockDevice()
                ? 'block'
                : st.isFIFO()
                  ? 'fifo'
                  : 'socket';
      const s: Seen = { type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      s.mtime = Math.floor(st.mtimeMs / 1000);
      if (type === 'file') {
        s.size = st.size;
        s.content = readFileSync(b(root, r)).toString('base64').slice(0, 64);
        if (st.nlink > 1) s.inode = inodes.get(st.ino) ?? (inodes.set(st.ino, key), key);
      }
      if (type === 'symlink')
        s.target = (readlinkSync(b(root, r), { encoding: 'buffer' }) as Buffer).toString('latin1');
      if (type === 'char' || type === 'block') s.rdev = st.rdev;
      out.set(key, s);
      if (type === 'dir') walk(r);
    }
  };
  walk(Buffer.alloc(0));
  return out;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests make device nodes and chown files: run them as root');
  dir = mkdtempSync(join(tmpdir(), 'img2vm-treetar-'));
  src = join(dir, 'src');
  mkdirSync(src);
  await makeTree();
});
afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('writeTreeTar', () => {
  let tarPath: string;
  let warnings: string[];
  let result: Awaited<ReturnType<typeof writeTreeTar>>;

  beforeAll(async () => {
    warnings = [];
    tarPath = join(dir, 'layer.tar');
    result = await writeTreeTar(src, tarPath, { onWarning: (m) => warnings.push(m) });
  });

  it('flattens back to the same tree: types, modes, owners, mtimes, content, targets, devices, hard links', async () => {
    const dest = join(dir, 'back');
    mkdirSync(dest);
    const back = await applyLayers(dest, [readFileSync(tarPath)]);
    warnings.push(...back.warnings.map((m) => `flatten: ${m}`));
    const want = snapshot(src);
    want.delete('sock');
    expect(snapshot(dest)).toEqual(want);
    expect(warnings).toEqual(['not in the built layer: /sock (a socket)']);
    expect(lstatSync(join(dest, 'usr/bin/ping')).nlink).toBe(3);
    expect(lstatSync(join(dest, 'dev/big')).rdev).toBe(lstatSync(join(src, 'dev/big')).rdev);
  });

  it('keeps binary xattr values exactly, on files, directories and non-UTF-8 names', async () => {
    const back = await readTreeXattrs(join(dir, 'back'));
    const orig = await readTreeXattrs(src);
    expect(orig.get('usr/bin/ping')).toEqual([['security.capability', CAP]]);
    expect(orig.get(RAW_NAME.toString('latin1'))).toEqual([['user.raw', BINARY]]);
    expect(back).toEqual(orig);
    // Every name of the linked inode carries the capability, since it belongs to the inode.
    expect(back.get('usr/bin/ping4')).toEqual([['security.capability', CAP]]);
  });

  it('turns zero blocks of sparse files back into holes', () => {
    const st = lstatSync(join(dir, 'back', 'sparse'));
    expect(st.size).toBe(16 << 20);
    expect(st.blocks * 512).toBeLessThanOrEqual(64 * 1024);
    expect(lstatSync(join(dir, 'back', 'all-hole')).blocks).toBe(0);
    expect(readFileSync(join(dir, 'back', 'sparse')).subarray(8 << 20, (8 << 20) + 4096)).toEqual(
      Buffer.alloc(4096, 0xab),
    );
  });

  it('writes each inode once and links the other names to it, in name order', async () => {
    const tar = new TarReader(new ByteSource(createReadStream(tarPath)[Symbol.asyncIterator]()));
    const seen: { path: string; type: string; linkpath: string }[] = [];
    for (let h = await tar.next(); h; h = await tar.next())
      seen.push({ path: h.path, type: h.type, linkpath: h.linkpath });
    expect(seen[0]).toEqual({ path: './', type: 'dir', linkpath: '' });
    expect(seen.filter((e) => e.linkpath === 'etc/ping6' && e.type === 'link').map((e) => e.path)).toEqual([
      'usr/bin/ping',
      'usr/bin/ping4',
    ]);
    const paths = seen.map((e) => Buffer.from(e.path.replace(/\/$/, ''), 'latin1'));
    expect([...paths].sort(Buffer.compare)).toEqual(paths);
    expect(result.entries).toBe(seen.length);
  });

  it('gives the same bytes for the same tree', async () => {
    const again = await writeTreeTar(src, join(dir, 'again.tar'));
    expect(again.digest).toBe(result.digest);
    expect(again.size).toBe(result.size);
    expect(result.size % 512).toBe(0);
  });
});

describe('devNumbers', () => {
  it('decodes Linux dev_t, including minors above 255 and majors above 255', () => {
    expect(devNumbers(0x0103)).toEqual({ major: 1, minor: 3 });
    // makedev(259, 70000) = (70000 & 0xff) | ((259 & 0xfff) << 8) | ((70000 & ~0xff) << 12)
    expect(devNumbers((70000 & 0xff) | (259 << 8) | ((70000 & ~0xff) * 4096))).toEqual({ major: 259, minor: 70000 });
  });
});
