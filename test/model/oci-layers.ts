// An independent model of how OCI image layers stack (image-spec layer.md), written from the spec as a path → entry map, to check img2vm's flattener against.
//
// It shares no code with src/rootfs: paths are resolved here with the kernel's rules inside a
// chroot, and the layer rules are applied as the spec states them:
//   - each layer's entries are applied in order on top of the layers below;
//   - an entry whose last component is `.wh.NAME` (a whiteout) removes NAME, and all beneath it,
//     from the lower layers; `.wh..wh..opq` (an opaque whiteout) removes every lower child of its
//     directory. "Whiteout files MUST only apply to resources in lower/parent layers": what the
//     same layer wrote, and the directories that hold it, stay;
//   - an entry replaces what its path names (a directory with everything beneath it), except that
//     a directory over a directory only changes the directory's metadata.
// Where the spec is silent and img2vm chose a policy (hostile input: names that leave the root,
// symlinked parents, links to nothing), the choice is written down below as POLICY, and the model
// follows it on purpose.
//
// Names and paths are binary strings (one char per byte), as tar carries them.

export interface Time {
  sec: number;
  nsec: number;
}

export interface Meta {
  mode: number;
  uid: number;
  gid: number;
  mtime: Time;
  /** xattr name → value. */
  xattrs: Map<string, Buffer>;
}

/** One tar entry of a layer, as the layer means it (the encoding is the tar writer's business). */
export type LayerEntry =
  | { type: 'file'; path: string; meta: Meta; content: Buffer }
  | { type: 'dir'; path: string; meta: Meta }
  | { type: 'symlink'; path: string; meta: Meta; target: string }
  /** A hard link: its own metadata belongs to the inode it names; only xattrs are added to it. */
  | { type: 'link'; path: string; meta: Meta; target: string }
  | { type: 'fifo'; path: string; meta: Meta }
  | { type: 'char' | 'block'; path: string; meta: Meta; major: number; minor: number };

export type Kind = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block';

/** An inode of the result: several paths may share one (hard links). */
export interface Inode {
  id: number;
  kind: Kind;
  meta: Meta;
  content?: Buffer;
  target?: string;
  major?: number;
  minor?: number;
}

export interface ModelResult {
  /** Real path ('' is the root, no leading slash) → inode. */
  paths: Map<string, Inode>;
}

/** The image cannot be flattened at all (what img2vm reports as a damaged or hostile image). */
export class ModelRejects extends Error {}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';
/** aufs' own metadata names start with this; they and all beneath them are not image content. */
const AUFS_META = '.wh..wh.';
const NAME_MAX = 255;
const PATH_MAX = 4096;
const MAX_SYMLINKS = 40;
const MAX_ID = 0xfffffffe;

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function under(p: string, top: string): boolean {
  return top === '' ? p !== '' : p === top || p.startsWith(`${top}/`);
}

/** Components of a tar path: '' and '.' mean nothing; '..' is kept for the resolver. */
function components(p: string): string[] {
  if (p.length >= PATH_MAX) throw new ModelRejects(`path of ${p.length} bytes`);
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/** Names no Linux file system can hold make the image unusable. */
function checkNames(comps: string[]): void {
  for (const c of comps) {
    if (c.length > NAME_MAX) throw new ModelRejects(`component of ${c.length} bytes`);
    if (c.includes('\0')) throw new ModelRejects('NUL in a path');
  }
}

type Where = { ok: true; dir: string; name: string | null } | { ok: false };

export class LayerModel {
  readonly paths = new Map<string, Inode>();
  /** How often each rule applied, so a test can show what its inputs exercised. */
  readonly counts = new Map<string, number>();
  private nextId = 1;
  /** Real paths the current layer wrote, and the directories holding them. */
  private written = new Set<string>();
  /** Layers applied so far: whiteouts in the first one have nothing below them to hide. */
  private layers = 0;
  /** Paths whiteouts removed (for counts only). */
  private readonly whitedOut = new Set<string>();

  constructor(private readonly epoch: Time) {
    this.paths.set('', this.inode('dir', this.implicitMeta()));
  }

  private count(what: string): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
  }

  private inode(kind: Kind, meta: Meta, extra: Partial<Inode> = {}): Inode {
    return { id: this.nextId++, kind, meta, ...extra };
  }

  /** POLICY: directories nobody wrote (missing parents, a new root) are 0755 root:root at the epoch, as Docker makes them. */
  private implicitMeta(): Meta {
    return { mode: 0o755, uid: 0, gid: 0, mtime: { ...this.epoch }, xattrs: new Map() };
  }

  /**
   * Where a path leads, following symlinks as the kernel does inside a chroot: '..' stops at the
   * root, absolute targets start again from the root, at most 40 symlinks per lookup. The final
   * component is followed only when followLast. With create, missing directories on the way are
   * made — POLICY: also where a symlink on the way points (img2vm's choice: the layer says the
   * entry lives below that directory; the spec says nothing, Linux's mkdir -p would fail).
   */
  private resolve(path: string, opts: { followLast?: boolean; create?: boolean }): Where {
    const comps = components(path);
    checkNames(comps);
    const todo = comps.reverse();
    let cur = '';
    let followed = 0;
    while (todo.length > 0) {
      const c = todo.pop()!;
      if (c === '' || c === '.') continue;
      if (c.length > NAME_MAX) throw new ModelRejects('component from a symlink is too long');
      if (c === '..') {
        if (cur === '') this.count("'..' at the root");
        cur = parentOf(cur);
        continue;
      }
      const p = join(cur, c);
      if (p.length + 1 >= PATH_MAX) throw new ModelRejects('resolved path too long');
      const n = this.paths.get(p);
      const last = todo.length === 0;
      if (n?.kind === 'symlink' && (!last || opts.followLast)) {
        if (++followed > MAX_SYMLINKS) throw new ModelRejects('too many levels of symbolic links');
        if (!last) this.count('symlinked parent followed');
        if (n.target!.startsWith('/')) cur = '';
        todo.push(...n.target!.split('/').reverse());
        continue;
      }
      if (last) return { ok: true, dir: cur, name: c };
      if (!n) {
        if (!opts.create) return { ok: false };
        this.count(followed > 0 ? 'directory made where a symlink points' : 'missing parent made');
        this.paths.set(p, this.inode('dir', this.implicitMeta()));
      } else if (n.kind !== 'dir') return { ok: false };
      cur = p;
    }
    return { ok: true, dir: cur, name: null };
  }

  /** Removes path and everything beneath it. */
  private removeTree(top: string): void {
    for (const p of [...this.paths.keys()]) if (p !== '' && under(p, top)) this.paths.delete(p);
  }

  /** Removes what lower layers left at or beneath top, keeping what this layer wrote. */
  private removeLower(top: string, includeTop: boolean): void {
    for (const p of [...this.paths.keys()]) {
      if (p === '' || !under(p, top) || (!includeTop && p === top)) continue;
      if (!this.written.has(p)) {
        this.whitedOut.add(p);
        this.removeTree(p);
      } else this.count('whiteout kept what its own layer wrote');
    }
  }

  private markWritten(p: string): void {
    for (let q = p; ; q = parentOf(q)) {
      this.written.add(q);
      if (q === '') break;
    }
  }

  /** Applies one layer. Throws ModelRejects where the whole image must be refused. */
  applyLayer(entries: LayerEntry[]): void {
    this.written = new Set();
    this.layers++;
    for (const e of entries) this.apply(e);
  }

  private apply(e: LayerEntry): void {
    const comps = components(e.path);
    // POLICY (Docker's too): aufs metadata (.wh..wh.plnk and the like) is not content, nor anything beneath it.
    if (comps.slice(0, -1).some((c) => c.startsWith(AUFS_META))) return;
    const last = comps[comps.length - 1];
    // A whiteout is never made itself: only the name it hides must fit in 255 bytes (`.wh.` + 255 is 259).
    if (last !== undefined && last.startsWith(WH)) return this.whiteout(comps.slice(0, -1).join('/'), last);
    checkNames(comps);
    if ((e.type === 'char' || e.type === 'block') && (e.major > 0xfff || e.minor > 0xfffff))
      throw new ModelRejects('device number out of range');
    // POLICY: a symlink with an empty target (or one Linux refuses) is skipped with a warning.
    if (e.type === 'symlink' && (e.target === '' || e.target.includes('\0') || e.target.length >= PATH_MAX)) return;

    let linked: Inode | undefined;
    let linkedAt = '';
    if (e.type === 'link') {
      // The target is looked up before the link's own path makes any directory.
      const t = this.resolve(e.target, {});
      // POLICY: a hard link to nothing or to a directory is skipped with a warning.
      if (!t.ok) return this.count('hard link to nothing skipped');
      if (t.name === null) return this.count('hard link to a directory skipped');
      linkedAt = join(t.dir, t.name);
      linked = this.paths.get(linkedAt);
      if (linked?.kind === 'dir') return this.count('hard link to a directory skipped');
      if (!linked)
        return this.count(
          this.whitedOut.has(linkedAt) ? 'hard link to a whited-out file skipped' : 'hard link to nothing skipped',
        );
    } else if (e.meta.uid > MAX_ID || e.meta.gid > MAX_ID) throw new ModelRejects('id out of range');

    const w = this.resolve(e.path, { create: true });
    // POLICY: an entry below something that is not a directory is skipped with a warning.
    if (!w.ok) return this.count('entry below a non-directory skipped');
    if (w.name === null) {
      // The path names an existing directory ('./', 'a/..'): only a directory entry means something there.
      if (e.type === 'dir') {
        this.paths.get(w.dir)!.meta = { ...e.meta, xattrs: validXattrs(e.meta.xattrs, 'dir') };
        this.markWritten(w.dir);
      }
      return;
    }
    const p = join(w.dir, w.name);
    const existing = this.paths.get(p);
    switch (e.type) {
      case 'dir': {
        const meta = { ...e.meta, xattrs: validXattrs(e.meta.xattrs, 'dir') };
        if (existing?.kind === 'dir') existing.meta = meta;
        else {
          if (existing) this.count('non-directory replaced by a directory');
          if (existing) this.removeTree(p);
          this.paths.set(p, this.inode('dir', meta));
        }
        break;
      }
      case 'link': {
        const t = linked!;
        if (existing !== t) {
          if (existing?.kind === 'dir' && under(linkedAt, p)) {
            // POLICY: a link replacing a directory that holds its own target: the directory goes, the link is skipped.
            this.removeTree(p);
            return this.count('hard link replacing the directory of its target skipped');
          }
          if (existing) this.removeTree(p);
          this.paths.set(p, t);
          this.count('hard link made');
        }
        // The inode's metadata is the target's; xattrs on the link entry are set on that inode.
        for (const [k, v] of validXattrs(e.meta.xattrs, t.kind)) t.meta.xattrs.set(k, v);
        break;
      }
      default: {
        if (existing?.kind === 'dir') this.count('directory replaced by a non-directory');
        if (existing) this.removeTree(p);
        const meta: Meta = { ...e.meta, xattrs: validXattrs(e.meta.xattrs, e.type) };
        if (e.type === 'file') this.paths.set(p, this.inode('file', meta, { content: e.content }));
        // Symlinks carry no permissions of their own: always 0777.
        else if (e.type === 'symlink')
          this.paths.set(p, this.inode('symlink', { ...meta, mode: 0o777 }, { target: e.target }));
        else if (e.type === 'fifo') this.paths.set(p, this.inode('fifo', meta));
        else this.paths.set(p, this.inode(e.type, meta, { major: e.major, minor: e.minor }));
      }
    }
    this.markWritten(p);
  }

  private whiteout(parent: string, last: string): void {
    // POLICY (Docker's too): other `.wh..wh.` names are aufs metadata, not whiteouts.
    if (last !== OPAQUE && last.startsWith(AUFS_META)) return;
    const name = last === OPAQUE ? null : last.slice(WH.length);
    // The spec: whiteouts hide lower layers only, so in the bottom layer they mean nothing (POLICY: nor is their
    // parent looked up, so a symlink loop there does not reject the image).
    if (this.layers === 1) return this.count('whiteout in the bottom layer ignored');
    // POLICY: a whiteout of '', '.' or '..' names nothing and is ignored; nor can a name over 255 bytes exist.
    if (name === '' || name === '.' || name === '..' || (name !== null && name.length > NAME_MAX)) return;
    // A whiteout never creates anything: a missing parent means there is nothing to hide.
    const w = this.resolve(parent, { followLast: true });
    if (!w.ok) return;
    const dir = w.name === null ? w.dir : join(w.dir, w.name);
    if (this.paths.get(dir)?.kind !== 'dir') return;
    const before = this.paths.size;
    if (name === null) this.removeLower(dir, false);
    else this.removeLower(join(dir, name), true);
    if (this.paths.size < before)
      this.count(name === null ? 'opaque whiteout removed entries' : 'whiteout removed entries');
    else this.count('whiteout removed nothing');
  }

  result(): ModelResult {
    return { paths: this.paths };
  }
}

/** POLICY: xattrs Linux would refuse on this kind of inode are dropped with a warning (user.* exists only on files and directories). */
function validXattrs(x: Map<string, Buffer>, kind: Kind): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, v] of x) {
    if (k.startsWith('user.') && kind !== 'file' && kind !== 'dir') continue;
    out.set(k, v);
  }
  return out;
}

/** Flattens layers bottom-up; counts, when given, add up how often each rule applied. */
export function flattenModel(layers: LayerEntry[][], epoch: Time, counts?: Map<string, number>): ModelResult {
  const m = new LayerModel(epoch);
  try {
    for (const l of layers) m.applyLayer(l);
  } finally {
    for (const [k, v] of m.counts) counts?.set(k, (counts.get(k) ?? 0) + v);
  }
  return m.result();
}
