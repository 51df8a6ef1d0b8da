// Writes initramfs archives (cpio "newc", optionally gzip) byte-reproducibly, and lays out the one img2vm's init boots from.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { ARCH, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import { INIT_MODULES_DIR, INIT_SPEC_PATH, renderInitSpec, type InitSpec } from './init-spec.js';

/** A file's content: bytes, or a host path read when the archive is written. */
export type FileSource = Buffer | { path: string };

/** Paths are relative to the archive root, without a leading slash ("dev/console"); owner is always 0:0. */
export type InitramfsEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; mode?: number; content: FileSource }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char' | 'block'; path: string; mode?: number; major: number; minor: number };

export interface InitramfsOptions {
  /** mtime of every entry (seconds); default 0. The conversion gives its fixed epoch (SOURCE_DATE_EPOCH, else 0). */
  mtime?: number;
  /**
   * Default none: under TCG the kernel unpacks a plain archive faster (a 31 MB one booted about 1 s sooner than its
   * 7.8 MB gzip; at the usual 0.6 MB of init and virtio modules there is no measurable difference). gzip only to
   * save space (about 3x smaller).
   */
  compression?: 'none' | 'gzip';
}

const S_IFMT = { dir: 0o040000, file: 0o100000, symlink: 0o120000, char: 0o020000, block: 0o060000 } as const;
const MAX_FILE = 0xffffffff;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function normalize(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.some((p) => p === '..')) {
    throw new Error(`initramfs: path "${path}" is empty or climbs out with ..`);
  }
  return parts.join('/');
}

interface CpioRecord {
  name: string;
  mode: number;
  mtime: number;
  data: Buffer;
  rdevMajor: number;
  rdevMinor: number;
}

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

/** One newc member: "070701", 13 eight-digit hex fields, the name with its NUL, padding, the data, padding. */
function member(r: CpioRecord, ino: number): Buffer[] {
  const name = Buffer.from(`${r.name}\0`, 'utf8');
  const nlink = (r.mode & 0o170000) === S_IFMT.dir ? 2 : 1;
  const fields = [ino, r.mode, 0, 0, nlink, r.mtime, r.data.length, 0, 0, r.rdevMajor, r.rdevMinor, name.length, 0];
  const header = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
  return [header, name, pad4(header.length + name.length), r.data, pad4(r.data.length)];
}

async function content(src: FileSource, path: string): Promise<Buffer> {
  if (Buffer.isBuffer(src)) return src;
  try {
    return await readFile(src.path);
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `cannot read ${src.path} for the initramfs (${path}): ${(e as Error).message}`,
      'check that the file exists and is readable',
      { cause: e },
    );
  }
}

/**
 * The archive: entries sorted by path (so parents come first and the bytes do not depend on input order),
 * missing parent directories added (mode 0755), inode numbers counted from 1, a fixed mtime, TRAILER!!! last.
 */
export async function writeInitramfs(entries: readonly InitramfsEntry[], opts: InitramfsOptions = {}): Promise<Buffer> {
  const mtime = opts.mtime ?? 0;
  const byPath = new Map<string, InitramfsEntry>();
  for (const e of entries) {
    const p = normalize(e.path);
    if (byPath.has(p)) throw new Error(`initramfs: "${p}" is given twice`);
    byPath.set(p, e);
  }
  for (const p of [...byPath.keys()]) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const e = byPath.get(parent);
      if (!e) byPath.set(parent, { type: 'dir', path: parent });
      else if (e.type !== 'dir') throw new Error(`initramfs: "${parent}" is a ${e.type} but has "${p}" below it`);
    }
  }
  const paths = [...byPath.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const chunks: Buffer[] = [];
  let ino = 1;
  for (const p of paths) {
    const e = byPath.get(p)!;
    let r: CpioRecord;
    if (e.type === 'dir')
      r = { name: p, mode: S_IFMT.dir | (e.mode ?? 0o755), mtime, data: Buffer.alloc(0), rdevMajor: 0, rdevMinor: 0 };
    else if (e.type === 'symlink')
      r = {
        name: p,
        mode: S_IFMT.symlink | 0o777,
        mtime,
        data: Buffer.from(e.target, 'utf8'),
        rdevMajor: 0,
        rdevMinor: 0,
      };
    else if (e.type === 'file')
      r = {
        name: p,
        mode: S_IFMT.file | (e.mode ?? 0o644),
        mtime,
        data: await content(e.content, p),
        rdevMajor: 0,
        rdevMinor: 0,
      };
    else
      r = {
        name: p,
        mode: S_IFMT[e.type] | (e.mode ?? 0o600),
        mtime,
        data: Buffer.alloc(0),
        rdevMajor: e.major,
        rdevMinor: e.minor,
      };
    if (r.data.length > MAX_FILE)
      throw new Img2vmError('usage', `${p} is larger than cpio's 4 GiB limit`, 'leave it out of the initramfs');
    chunks.push(...member(r, ino++));
  }
  chunks.push(
    ...member({ name: 'TRAILER!!!', mode: 0, mtime: 0, data: Buffer.alloc(0), rdevMajor: 0, rdevMinor: 0 }, 0),
  );
  const archive = Buffer.concat(chunks);
  // gzip from zlib has no name and mtime 0 in its header, so compressed output is as reproducible as the archive.
  return opts.compression === 'gzip' ? gzipSync(archive, { level: 9 }) : archive;
}

/** native/init (amd64) or native/init-ARCH as built by scripts/build-native.sh, beside src/ and dist/ alike. */
export function nativeInitPath(arch: GuestArch = 'amd64'): string {
  return fileURLToPath(new URL(`../../native/${arch === 'amd64' ? 'init' : `init-${arch}`}`, import.meta.url));
}

/** Refuses an init built for another architecture than the guest's (its ELF e_machine), naming both. */
export function checkInitArch(path: string, arch: GuestArch): void {
  const head = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  const machine = head.toString('latin1', 0, 4) === '\x7fELF' ? head.readUInt16LE(18) : -1;
  if (machine === ARCH[arch].elfMachine) return;
  throw new Img2vmError(
    'toolMissing',
    `img2vm's init ${path} is not a linux/${arch} program (ELF machine ${machine}, a ${arch} one is ${ARCH[arch].elfMachine})`,
    'run scripts/build-native.sh on an amd64 host with gcc-aarch64-linux-gnu and libc6-dev-arm64-cross installed',
  );
}

export interface InitModule {
  /** File name in the initramfs, e.g. virtio_blk.ko or virtio_blk.ko.xz (the init loads compressed ones as such). */
  name: string;
  content: FileSource;
  /** A CPU-specific speed-up: the init goes on when it does not load (see InitSpec.optionalModules). */
  optional?: boolean;
}

/**
 * The initramfs img2vm's init boots from: /init, /dev/console (so PID 1 has a console before devtmpfs), the
 * mount points, the modules under /img2vm/modules in load order, and the spec naming them.
 */
export function img2vmInitramfsEntries(
  spec: Omit<InitSpec, 'modules' | 'optionalModules'>,
  modules: readonly InitModule[],
  init: FileSource = { path: nativeInitPath() },
): InitramfsEntry[] {
  if (!Buffer.isBuffer(init) && !existsSync(init.path)) {
    throw new Img2vmError(
      'toolMissing',
      `img2vm's init is not built (${init.path})`,
      'run scripts/build-native.sh (it needs musl-tools or gcc; arm64 guests need gcc-aarch64-linux-gnu and libc6-dev-arm64-cross)',
    );
  }
  const names = new Set<string>();
  for (const m of modules) {
    if (!/^[A-Za-z0-9_.+-]+$/.test(m.name) || names.has(m.name))
      throw new Error(`initramfs: module file name "${m.name}" is invalid or repeated`);
    names.add(m.name);
  }
  const modulePaths = modules.map((m) => `/${INIT_MODULES_DIR}/${m.name}`);
  return [
    { type: 'file', path: 'init', mode: 0o755, content: init },
    { type: 'dir', path: 'dev' },
    { type: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
    { type: 'dir', path: 'proc', mode: 0o555 },
    { type: 'dir', path: 'sys', mode: 0o555 },
    { type: 'dir', path: 'newroot' },
    {
      type: 'file',
      path: INIT_SPEC_PATH,
      mode: 0o644,
      content: renderInitSpec({
        ...spec,
        modules: modulePaths,
        optionalModules: modulePaths.filter((_, i) => modules[i]!.optional),
      }),
    },
    ...modules.map((m, i): InitramfsEntry => ({
      type: 'file',
      path: modulePaths[i]!.slice(1),
      mode: 0o644,
      content: m.content,
    })),
  ];
}
