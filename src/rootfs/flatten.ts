// Applies image layers, in order, onto a staging directory with OCI whiteout semantics, treating every entry as hostile.
import {
  closeSync,
  constants as C,
  fchmodSync,
  fchownSync,
  fstatSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  chmodSync,
  mkdirSync,
  openSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';
import { run } from '../tools/index.js';
import { aclXattrProblem, chmodAcl } from './acl.js';
import { isCodecError, openLayer, type OpenedLayer } from './decompress.js';
import {
  display,
  fsPath,
  joinRel,
  lstatOpt,
  RootResolver,
  splitArchivePath,
  toBin,
  type BinPath,
} from './safepath.js';
import { NAME_MAX, WHITEOUT_PREFIX } from './limits.js';
import { ByteSource, TarFormatError, TarReader, type TarHeader } from './tar.js';
import { SETFATTR_RESTORE_ARGV, xattrRestoreScript } from './xattr.js';
import { SparseWriter } from './sparse.js';
import { measureTree, type FlattenOptions, type FlattenStats } from './stats.js';

export type { FlattenOptions, FlattenStats } from './stats.js';

const CORRUPT_HINT = 'the layer blob is truncated or damaged; pull the image again (--pull always)';
const WH = WHITEOUT_PREFIX;
const WH_META = '.wh..wh.';
const WH_OPAQUE = '.wh..wh..opq';

interface DirMeta {
  mode: number;
  mtime: number;
}

/**
 * Builds a root file system from layer tars. Layers must be applied one at a time, in order;
 * finish() applies directory modes and mtimes (deferred because writing children changes them)
 * and measures the result.
 *
 * Hostile-content policy: paths resolve with chroot semantics (see RootResolver); entries that
 * cannot be given a safe meaning inside the root are skipped with a warning (a hardlink to a
 * missing target or a directory, a parent that is a file, a whiteout of '.' or '..'); entries
 * that no Linux file system can hold (a component over 255 bytes, a symlink loop on the path)
 * and corrupt archives are badImage errors.
 */
export class RootfsBuilder {
  private readonly resolver: RootResolver;
  private readonly warn: (msg: string) => void;
  private readonly signal: AbortSignal | undefined;
  /** Directory modes and mtimes to apply in finish(), by real path relative to the root. */
  private readonly deferred = new Map<BinPath, DirMeta>();
  /** xattr names set on each path, for the statistics. */
  private readonly xattrNames = new Map<BinPath, Set<string>>();
  /** Data blocks written for each regular-file inode we created. */
  private readonly fileBlocks = new Map<number, number>();
  /** Entries of the current layer, and their ancestors: a whiteout only hides lower layers. */
  private layerPaths = new Set<BinPath>();
  private layerAncestors = new Set<BinPath>();
  /** xattrs of the current layer, set in one setfattr run when the layer ends. */
  private pendingXattrs = new Map<BinPath, Map<string, Buffer>>();
  private whiteouts = 0;
  private tmpCounter = 0;
  private busy = false;
  private finished = false;

  constructor(root: string, opts: FlattenOptions = {}) {
    this.resolver = new RootResolver(toBin(realpathSync(resolvePath(root))));
    this.warn = opts.onWarning ?? (() => {});
    this.signal = opts.signal;
  }

  async applyLayer(stream: NodeJS.ReadableStream | Readable): Promise<void> {
    if (this.finished) throw new Error('RootfsBuilder.applyLayer called after finish()');
    if (this.busy) throw new Error('RootfsBuilder.applyLayer called while another layer is being applied');
    this.busy = true;
    const signal = this.signal;
    let layer: OpenedLayer | undefined;
    const onAbort = (): void => layer?.destroy(signal?.reason);
    try {
      signal?.throwIfAborted();
      signal?.addEventListener('abort', onAbort, { once: true });
      layer = await openLayer(stream, signal);
      signal?.throwIfAborted();
      const tar = new TarReader(new ByteSource(layer.chunks));
      for (;;) {
        const h = await tar.next();
        if (h === null) break;
        signal?.throwIfAborted();
        await this.applyEntry(h, tar);
      }
      await this.flushXattrs();
    } catch (e) {
      layer?.destroy(e);
      throw this.classify(e, layer);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await layer?.dispose();
      this.layerPaths = new Set();
      this.layerAncestors = new Set();
      this.pendingXattrs = new Map();
      this.busy = false;
    }
  }

  async finish(): Promise<FlattenStats> {
    if (this.busy) throw new Error('RootfsBuilder.finish called while a layer is being applied');
    if (this.finished) throw new Error('RootfsBuilder.finish called twice');
    this.finished = true;
    const stats: FlattenStats = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, whiteouts: this.whiteouts, xattrs: 0, bytes: 0, blocks4k: 0 };
    measureTree(this.resolver, { xattrNames: this.xattrNames, fileBlocks: this.fileBlocks, deferred: this.deferred }, stats);
    return stats;
  }

  private classify(e: unknown, layer: OpenedLayer | undefined): unknown {
    if (this.signal?.aborted) return this.signal.reason;
    if (e instanceof Img2vmError) return e;
    if (e instanceof TarFormatError) return new Img2vmError('badImage', `layer is corrupt: ${e.message}`, CORRUPT_HINT, { cause: e });
    if (isCodecError(e) && !layer?.isSourceError(e)) {
      return new Img2vmError('badImage', `layer is corrupt: ${layer?.compression ?? 'decompression'}: ${e.message}`, CORRUPT_HINT, { cause: e });
    }
    const code = (e as NodeJS.ErrnoException | null)?.code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new Img2vmError('outputNotWritable', `no space left while unpacking the image into ${display(this.resolver.root)}`, 'free space there, or point TMPDIR at a larger file system', { cause: e });
    }
    return e;
  }

  // ---- one entry ----

  private async applyEntry(h: TarHeader, tar: TarReader): Promise<void> {
    const comps = splitArchivePath(h.path, WH);
    // aufs metadata (.wh..wh.plnk, .wh..wh.aufs ...) and anything beneath it: not image content.
    for (let i = 0; i < comps.length - 1; i++) if (comps[i]!.startsWith(WH_META)) return;
    const last = comps[comps.length - 1];
    if (last !== undefined && last.startsWith(WH)) {
      this.whiteout(comps.slice(0, -1), last, h);
      return;
    }
    if (h.type === 'unknown') {
      this.warn(`skipping "${display(h.path)}": unsupported tar entry type '${h.typeflag}'`);
      return;
    }

    // A hardlink target is looked up before anything is created for the link itself.
    let linkTarget: { rel: BinPath; st: Stats } | undefined;
    if (h.type === 'link') {
      linkTarget = this.lookupLinkTarget(h);
      if (!linkTarget) return;
    }

    const r = this.resolver.resolve(comps, true);
    if (!r.ok) {
      this.warn(`skipping "${display(h.path)}": "${display(r.at)}" is not a directory`);
      return;
    }
    if (r.name === null) {
      // The path names an existing directory ("./", "a/.."): only a directory entry means something here.
      if (h.type === 'dir') {
        this.updateDir(r.parent, h);
        this.markLayer(r.parent);
        if (h.xattrs.size) this.pendingXattrs.set(r.parent, xattrsToSet(h));
      } else this.warn(`skipping "${display(h.path)}": a ${h.type} entry cannot replace the directory "${display(r.parent) || '/'}"`);
      return;
    }
    const rel = joinRel(r.parent, r.name);
    const abs = this.resolver.checkedAbs(rel);
    const st = lstatOpt(abs);

    switch (h.type) {
      case 'dir':
        if (st?.isDirectory()) {
          this.updateDir(rel, h);
        } else {
          if (st) this.remove(rel, abs, st);
          mkdirSync(fsPath(abs), 0o700);
          this.updateDir(rel, h);
        }
        break;
      case 'file':
        if (st) this.remove(rel, abs, st);
        await this.writeFile(abs, h, tar);
        break;
      case 'symlink':
        if (h.linkpath === '' || h.linkpath.includes('\0') || h.linkpath.length >= 4096) {
          this.warn(`skipping symlink "${display(h.path)}": its target is empty or invalid`);
          return;
        }
        if (st) this.remove(rel, abs, st);
        symlinkSync(fsPath(h.linkpath), fsPath(abs));
        lchownSync(fsPath(abs), h.uid, h.gid);
        lutimesSync(fsPath(abs), h.mtime, h.mtime);
        break;
      case 'link': {
        const t = linkTarget!;
        if (t.rel === rel || (st && st.ino === t.st.ino && st.dev === t.st.dev)) break; // already that inode
        if (st) this.remove(rel, abs, st);
        const tabs = this.resolver.abs(t.rel);
        if (!lstatOpt(tabs)) {
          // Removing the old entry took the target with it (a link into the tree it replaced).
          this.warn(`skipping hardlink "${display(h.path)}": its target "${display(h.linkpath)}" no longer exists`);
          return;
        }
        // No chown/chmod/utimes: they belong to the shared inode, and chown would drop its file capabilities.
        linkSync(fsPath(tabs), fsPath(abs));
        break;
      }
      case 'fifo':
      case 'char':
      case 'block':
        if (st) this.remove(rel, abs, st);
        await this.makeNode(abs, h);
        break;
    }
    this.markLayer(rel);
    if (h.xattrs.size) this.pendingXattrs.set(rel, xattrsToSet(h));
  }

  private lookupLinkTarget(h: TarHeader): { rel: BinPath; st: Stats } | undefined {
    const skip = (why: string): undefined => {
      this.warn(`skipping hardlink "${display(h.path)}" → "${display(h.linkpath)}": ${why}`);
      return undefined;
    };
    const tc = splitArchivePath(h.linkpath);
    const t = this.resolver.resolve(tc, false);
    if (!t.ok) return skip('the target does not exist');
    if (t.name === null) return skip('the target is a directory');
    const rel = joinRel(t.parent, t.name);
    const st = lstatOpt(this.resolver.checkedAbs(rel));
    if (!st) return skip('the target does not exist');
    if (st.isDirectory()) return skip('the target is a directory');
    return { rel, st };
  }

  private updateDir(rel: BinPath, h: TarHeader): void {
    lchownSync(fsPath(this.resolver.abs(rel)), h.uid, h.gid);
    this.deferred.set(rel, { mode: h.mode, mtime: h.mtime });
  }

  private async writeFile(abs: BinPath, h: TarHeader, tar: TarReader): Promise<void> {
    const fd = openSync(fsPath(abs), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    try {
      const w = new SparseWriter(fd);
      const signal = this.signal;
      // A sparse file's holes are skipped, not written.
      for await (const p of tar.parts()) {
        signal?.throwIfAborted();
        if (typeof p === 'number') w.hole(p);
        else w.write(p);
      }
      const blocks = w.end(h.size);
      // chown clears setuid/setgid and file capabilities, so it goes first; xattrs come after the layer.
      fchownSync(fd, h.uid, h.gid);
      fchmodSync(fd, h.mode);
      futimesSync(fd, h.mtime, h.mtime);
      this.fileBlocks.set(fstatSync(fd).ino, blocks);
    } finally {
      closeSync(fd);
    }
  }

  /** Made under a plain temporary name and renamed, so spawned tools never see image-controlled bytes in argv. */
  private async makeNode(abs: BinPath, h: TarHeader): Promise<void> {
    let tmp: BinPath;
    do tmp = `${this.resolver.root}/.img2vm-node-${process.pid}-${this.tmpCounter++}`;
    while (lstatOpt(tmp));
    const tmpStr = Buffer.from(tmp, 'latin1').toString('utf8');
    const opts = this.signal ? { signal: this.signal } : {};
    if (h.type === 'fifo') await run('mkfifo', [tmpStr], opts);
    else await run('mknod', [tmpStr, h.type === 'char' ? 'c' : 'b', String(h.devmajor), String(h.devminor)], opts);
    renameSync(fsPath(tmp), fsPath(abs));
    lchownSync(fsPath(abs), h.uid, h.gid);
    chmodSync(fsPath(abs), h.mode);
    lutimesSync(fsPath(abs), h.mtime, h.mtime);
  }

  // ---- whiteouts ----

  private whiteout(parentComps: string[], last: string, h: TarHeader): void {
    if (last !== WH_OPAQUE && last.startsWith(WH_META)) return; // other aufs metadata
    const name = last === WH_OPAQUE ? null : last.slice(WH.length);
    if (name === '' || name === '.' || name === '..') {
      this.warn(`ignoring whiteout "${display(h.path)}": it names no entry`);
      return;
    }
    if (name !== null && name.length > NAME_MAX) {
      // No layer below can have made such a name (it is refused there), so there is nothing to hide.
      this.warn(`ignoring whiteout "${display(h.path)}": it hides a name of ${name.length} bytes, and no Linux file has a name over ${NAME_MAX}`);
      return;
    }
    this.whiteouts++;
    // A whiteout never creates anything: a missing parent means there is nothing to hide.
    const r = this.resolver.resolve([...parentComps, '.'], false);
    if (!r.ok) return;
    const dir = r.parent; // the trailing '.' makes the resolver follow every real component
    if (name === null) {
      const dabs = this.resolver.abs(dir);
      const st = lstatOpt(dabs);
      if (!st?.isDirectory()) return;
      for (const child of readdirSync(fsPath(dabs), { encoding: 'buffer' })) {
        const c = child.toString('latin1');
        const crel = joinRel(dir, c);
        const cabs = this.resolver.checkedAbs(crel);
        const cst = lstatOpt(cabs);
        if (cst) this.pruneLower(crel, cabs, cst);
      }
      return;
    }
    const rel = joinRel(dir, name);
    const abs = this.resolver.checkedAbs(rel);
    const st = lstatOpt(abs);
    if (st) this.pruneLower(rel, abs, st);
  }

  /** Removes what lower layers put at rel, keeping what the current layer added (and the directories holding it). */
  private pruneLower(rel: BinPath, abs: BinPath, st: Stats): void {
    if (!this.layerPaths.has(rel) && !this.layerAncestors.has(rel)) {
      this.remove(rel, abs, st);
      return;
    }
    if (!st.isDirectory()) return;
    for (const child of readdirSync(fsPath(abs), { encoding: 'buffer' })) {
      const c = child.toString('latin1');
      const crel = joinRel(rel, c);
      const cabs = this.resolver.checkedAbs(crel);
      const cst = lstatOpt(cabs);
      if (cst) this.pruneLower(crel, cabs, cst);
    }
  }

  // ---- bookkeeping ----

  private markLayer(rel: BinPath): void {
    this.layerPaths.add(rel);
    for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) {
      const a = rel.slice(0, i);
      if (this.layerAncestors.has(a)) break; // its own ancestors are in already
      this.layerAncestors.add(a);
    }
  }

  /** Removes an entry (a directory with its tree; never following symlinks) and forgets what we knew about it. */
  private remove(rel: BinPath, abs: BinPath, st: Stats): void {
    if (st.isDirectory()) {
      rmSync(fsPath(abs), { recursive: true, force: true });
      const prefix = `${rel}/`;
      for (const m of [this.deferred, this.xattrNames, this.pendingXattrs] as Map<BinPath, unknown>[]) {
        for (const k of m.keys()) if (k.startsWith(prefix)) m.delete(k);
      }
    } else {
      unlinkSync(fsPath(abs));
    }
    this.deferred.delete(rel);
    this.xattrNames.delete(rel);
    this.pendingXattrs.delete(rel);
  }

  private async flushXattrs(): Promise<void> {
    if (this.pendingXattrs.size === 0) return;
    const items: { path: BinPath; attrs: Iterable<[string, Buffer]> }[] = [];
    for (const [rel, attrs] of this.pendingXattrs) {
      const abs = this.resolver.abs(rel);
      if (!lstatOpt(abs)) continue;
      items.push({ path: abs, attrs });
      const names = this.xattrNames.get(rel) ?? new Set<string>();
      for (const n of attrs.keys()) names.add(n);
      this.xattrNames.set(rel, names);
    }
    if (items.length === 0) return;
    const r = await run('setfattr', SETFATTR_RESTORE_ARGV, { input: xattrRestoreScript(items), reject: false, ...(this.signal ? { signal: this.signal } : {}) });
    if (r.exitCode !== 0) {
      for (const line of (r.stderr || r.stdout).split('\n').filter(Boolean)) this.warn(`extended attribute not set: ${line}`);
    }
  }
}

/**
 * The entry's xattrs as setfattr is to set them after the layer: an access ACL already as a chmod
 * to the header's mode leaves it. Docker's and containerd's unpackers set xattrs and then the mode,
 * which rewrites the ACL (posix_acl_chmod()); here files get their mode first, and setting the
 * ACL would set the mode from it instead (layer-meta.ts, withAccessAcl, says the same for the tree).
 */
function xattrsToSet(h: TarHeader): Map<string, Buffer> {
  const acl = h.xattrs.get('system.posix_acl_access');
  if (!acl || aclXattrProblem(acl) !== undefined) return h.xattrs;
  return new Map([...h.xattrs, ['system.posix_acl_access', chmodAcl(acl, h.mode)]]);
}
