// Shared helpers for the rootfs tests: tars generated in code, a sandbox with sentinels around the root, and a way to apply layers.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pack, type Header } from 'tar-stream';

type HeaderArg = Partial<Header> & Pick<Header, 'name'>;
import { LayerFlattener, type FlattenStats } from '../../src/rootfs/layers.js';
import { materialise } from '../../src/rootfs/materialise.js';
import { SpoolStore } from '../../src/rootfs/spool-store.js';

export interface Ent {
  name: string;
  type?: Header['type'];
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  linkname?: string;
  content?: Buffer | string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

export const T0 = new Date('2020-01-02T03:04:05Z');

/** A tar made by tar-stream's pack(): what most layer writers produce (ustar + PAX for long or non-ASCII names). */
export async function makeTar(entries: Ent[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const drained = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const content = e.content === undefined ? undefined : Buffer.from(e.content);
    const h: HeaderArg = {
      name: e.name,
      type: e.type ?? 'file',
      mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? T0,
      size: content?.length ?? 0,
    };
    if (e.linkname !== undefined) h.linkname = e.linkname;
    if (e.devmajor !== undefined) h.devmajor = e.devmajor;
    if (e.devminor !== undefined) h.devminor = e.devminor;
    if (e.pax) h.pax = e.pax;
    await new Promise<void>((res, rej) => {
      const cb = (err?: Error | null): void => (err ? rej(err) : res());
      if (content) p.entry(h, content, cb);
      else p.entry(h, cb);
    });
  }
  p.finalize();
  await drained;
  return Buffer.concat(chunks);
}

/** Replaces a same-length ASCII placeholder inside a tar (e.g. in a PAX record) with raw bytes. */
export function patchBytes(tar: Buffer, placeholder: string, bytes: Buffer): Buffer {
  const ph = Buffer.from(placeholder, 'latin1');
  if (ph.length !== bytes.length) throw new Error('placeholder and bytes differ in length');
  const i = tar.indexOf(ph);
  if (i < 0 || tar.indexOf(ph, i + 1) >= 0) throw new Error('placeholder not found exactly once');
  const out = Buffer.from(tar);
  bytes.copy(out, i);
  return out;
}

/** One raw ustar/GNU header block, for what pack() cannot express (raw name bytes, GNU long names, huge sizes). */
export function rawHeader(o: {
  name: Buffer | string;
  size?: number;
  typeflag?: string;
  mode?: number;
  gnu?: boolean;
  linkname?: string;
}): Buffer {
  const b = Buffer.alloc(512);
  const name = Buffer.isBuffer(o.name) ? o.name : Buffer.from(o.name);
  name.copy(b, 0, 0, Math.min(100, name.length));
  const oct = (v: number, off: number, len: number): void => {
    b.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, 'latin1');
  };
  oct(o.mode ?? 0o644, 100, 8);
  oct(0, 108, 8);
  oct(0, 116, 8);
  oct(o.size ?? 0, 124, 12);
  oct(Math.floor(T0.getTime() / 1000), 136, 12);
  b.write(o.typeflag ?? '0', 156, 'latin1');
  if (o.linkname) b.write(o.linkname, 157, 'latin1');
  if (o.gnu) b.write('ustar  \0', 257, 'latin1');
  else b.write('ustar\x0000', 257, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

/** Sets a numeric header field to value, base-256 (two's complement, as GNU tar writes negative numbers), and fixes the checksum. */
export function setBase256(header: Buffer, off: number, len: number, value: bigint): Buffer {
  const b = Buffer.from(header);
  let v = BigInt.asUintN(len * 8, value);
  for (let i = len - 1; i >= 0; i--) {
    b[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  b[off] = b[off]! | 0x80;
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

export function padTo512(data: Buffer): Buffer {
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([data, Buffer.alloc(pad)]);
}

export const TAR_END = Buffer.alloc(1024);

/** One PAX record, its length counting itself. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let n = body.length + 1;
  while (String(n).length + body.length !== n) n++;
  return `${n}${body}`;
}

/**
 * An entry as Python's tarfile (PAX_FORMAT) writes it: the path in a PAX record, the ustar name
 * field its first 100 bytes. More records (binary strings) may follow the path.
 */
export function paxEntry(path: string, content: Buffer, typeflag = '0', records: Array<[string, string]> = []): Buffer {
  const pax = Buffer.from([paxRecord('path', path), ...records.map(([k, v]) => paxRecord(k, v))].join(''), 'latin1');
  return Buffer.concat([
    rawHeader({ name: '././@PaxHeader', typeflag: 'x', size: pax.length }),
    padTo512(pax),
    rawHeader({ name: path.slice(0, 100), typeflag, size: content.length }),
    padTo512(content),
  ]);
}

/** An entry as GNU tar (--format=gnu) writes it: an 'L' record with the path, then a header whose name field is cut at 100 bytes. */
export function gnuEntry(path: string, content: Buffer, typeflag = '0'): Buffer {
  const name = Buffer.from(`${path}\0`, 'latin1');
  return Buffer.concat([
    rawHeader({ name: '././@LongLink', typeflag: 'L', size: name.length, gnu: true }),
    padTo512(name),
    rawHeader({ name: path.slice(0, 100), typeflag, size: content.length, gnu: true }),
    padTo512(content),
  ]);
}

/** The staging root sits a few levels down, so that naive `..` escapes would land in the sandbox where we can see them. */
export interface Sandbox {
  dir: string;
  root: string;
  outside: string;
  cleanup(): void;
}

export function sandbox(): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'img2vm-rootfs-'));
  const root = join(dir, 'l1', 'l2', 'l3', 'root');
  mkdirSync(root, { recursive: true });
  const outside = join(dir, 'outside');
  mkdirSync(join(outside, 'etc'), { recursive: true });
  writeFileSync(join(outside, 'secret'), 'do not touch\n');
  writeFileSync(join(outside, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  // What `../../..`-style escapes from the root would reach.
  for (const d of ['l1', 'l1/l2', 'l1/l2/l3']) {
    mkdirSync(join(dir, d, 'etc'), { recursive: true });
    writeFileSync(join(dir, d, 'etc', 'passwd'), `sentinel ${d}\n`);
    writeFileSync(join(dir, d, 'b'), `sentinel b ${d}\n`);
  }
  // rm(1) walks relative to open directories: trees deeper than PATH_MAX under dir go too.
  return { dir, root, outside, cleanup: () => execFileSync('rm', ['-rf', '--', dir]) };
}

/** Everything in the sandbox except the root: type, mode, owner, size, times, content, link target. */
export function snapshotOutside(sb: Sandbox): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    for (const n of readdirSync(p).sort()) {
      const q = join(p, n);
      if (q === sb.root) continue;
      const st = lstatSync(q);
      let extra = '';
      if (st.isFile()) extra = createHash('sha256').update(readFileSync(q)).digest('hex');
      else if (st.isSymbolicLink()) extra = readlinkSync(q);
      out.push(
        `${q.slice(sb.dir.length)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.nlink} ${st.mtimeMs} ${extra}`,
      );
      if (st.isDirectory()) walk(q);
    }
  };
  walk(sb.dir);
  const st = lstatSync(sb.dir);
  out.push(`. ${st.mode.toString(8)} ${st.mtimeMs}`);
  return out;
}

export interface Applied {
  stats: FlattenStats;
  warnings: string[];
}

/**
 * What the runc builder does with an image's layers: flattened into the tree (contents spooled in a directory of
 * their own on the same file system, outside the sandbox), then made real in root, an empty directory.
 */
export async function applyLayers(root: string, layers: Buffer[], signal?: AbortSignal): Promise<Applied> {
  const warnings: string[] = [];
  const spool = new SpoolStore(join(mkdtempSync(join(tmpdir(), 'img2vm-spool-')), 'spool'));
  try {
    const f = new LayerFlattener({
      store: spool,
      epoch: { sec: T0.getTime() / 1000, nsec: 0 },
      onWarning: (w) => warnings.push(w),
      ...(signal ? { signal } : {}),
    });
    for (const l of layers) await f.applyLayer(Readable.from([l]));
    const { tree, stats } = f.finish();
    await materialise(tree, root, spool, { onWarning: (w) => warnings.push(w), ...(signal ? { signal } : {}) });
    return { stats, warnings };
  } finally {
    rmSync(join(spool.dir, '..'), { recursive: true, force: true });
  }
}

/** Reads one xattr as hex with getfattr (the test's own check, independent of the code under test). */
export function getXattrHex(path: string, name: string): string | undefined {
  try {
    const out = execFileSync('getfattr', ['-h', '-e', 'hex', '-n', name, path], {
      encoding: 'latin1',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const m = /=0x([0-9a-f]*)\s*$/m.exec(out);
    return m ? m[1] : undefined;
  } catch {
    return undefined;
  }
}
