// The one content-addressed store of blobs, kernels, builds and converted disks: lock, temp + publish by rename, verify on entry and on read, holders, last use, sweep, listing.
//
// <root>/blobs/sha256/<hex>        a blob (file)              <root>/kernels/trees/<key>/   a kernel bundle
// <root>/builds/runc/<key>/        a guest build              <root>/disks/<key>/           a converted disk (disks.ts)
// <root>/tmp/<kind>.<name>.<pid>.<host tag>.<nonce>[.gone]   an entry being written (or, with .gone, removed)
// <root>/locks/<kind>.<name>.lock                          held while one process writes that key (or does other
//                                                           work of the kind under that name)
// <root>/holders/<kind>.<name>.<pid>.<host tag>.<nonce>    one per running process (and run) that uses the entry
//
// An entry appears only by rename() of a complete, fsynced and checked temp, so a reader never sees half of one, and
// a writer killed at any instant leaves only a temp that a later run sweeps. The last use of an entry is its mtime,
// set when a run takes it (never its access time, which listing or a backup would move).
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import { hostTag, ownerTag, pidAlive } from '../core/leftovers.js';
import { acquireLock, lockHolder, type HeldLock, type LockOptions } from '../core/lock.js';
import { cacheDir } from '../core/paths.js';
import type { Scope } from '../core/scope.js';
import { syncDir, syncTree, treeBytes } from './files.js';
import { isKind, KINDS, LAYOUT, LOCK_NAME, type KeyOf, type Kind } from './kinds.js';

export interface StoreOptions {
  /**
   * When an entry's bytes are checked against its key or record: 'read' (the default) on entry and again each time
   * a run takes it, so a cache on a failing disk cannot poison an image; 'entry' once, when it enters the store,
   * and trusted after (the cheap checks of wholeness still run on every read).
   */
  verify?: 'read' | 'entry';
}

/** How one kind of entry is judged; the store runs it on entry, and on read (intact only when reads are verified). */
export interface Check {
  /** Cheap: the entry is whole as far as its record says (a record that parses, files of the sizes it names). */
  whole(path: string): Promise<boolean>;
  /** Every byte as the key or the record promises (a hash, a walk of the whole tree). */
  intact?(path: string): Promise<boolean>;
}

/** An entry being written: private to its writer until publish() renames it into place. */
export interface Draft {
  readonly kind: Kind;
  readonly key: string;
  /** Where to write the entry: an empty file already created (blob), or an empty directory to fill. */
  readonly path: string;
  /** The draft's own directory, for whatever else the writer needs (downloads, staging); gone with the draft. */
  readonly scratch: string;
  readonly published: boolean;
  /**
   * fsyncs what was written, checks it (when given a check), and renames it into place. When a faster writer has
   * published the same key meanwhile, its entry stands (a file entry is replaced: the bytes are the same).
   */
  publish(check?: Check): Promise<string>;
  /** Removes the draft unless it was published; safe to call more than once. */
  discard(): Promise<void>;
}

export interface StoreEntry {
  kind: Kind;
  key: string;
  path: string;
  /** Apparent bytes (a tree's files, hard links counted once). */
  bytes: number;
  /** Epoch ms of the last use (the entry's mtime). */
  lastUsed: number;
  /** Live img2vm processes that hold the entry: prune leaves it alone. */
  holders: number[];
  /**
   * Live img2vm processes writing an entry of the same kind: prune leaves the whole kind alone meanwhile, as such a
   * writer may be about to take this one (a pull reads back the manifest it just wrote; a kernel fetch reuses a tree).
   */
  writers: number[];
}

export interface EnsureOptions {
  scope: Scope;
  check: Check;
  /** The lock's signal and onWait (told once, with the pid of the process making the same entry). */
  lock?: LockOptions;
  /** Fills the draft; may publish it itself (a blob writer that verified the bytes as they came). */
  make(draft: Draft): Promise<void>;
}

/** What others left that cannot be judged by pid (another host, a name img2vm does not make) goes after a day. */
const FOREIGN_MAX_AGE = 24 * 3600_000;

const OWNED = /^([a-z]+)\.([A-Za-z0-9_-]+)\.(\d+)\.([0-9a-f]{8})\.([0-9a-f]{12})(\.gone)?$/;

interface Owned {
  kind: Kind;
  name: string;
  pid: number;
  host: string;
  gone: boolean;
}

function parseOwned(n: string): Owned | undefined {
  const m = OWNED.exec(n);
  if (!m || !isKind(m[1]!)) return undefined;
  return { kind: m[1], name: m[2]!, pid: Number(m[3]), host: m[4]!, gone: !!m[6] };
}

/** Whether the owner of a name lives: on this host its pid must exist; elsewhere it cannot be asked, so a day. */
function ownerLives(o: Owned, mtimeMs: number): boolean {
  if (o.host !== hostTag()) return Date.now() - mtimeMs < FOREIGN_MAX_AGE;
  return o.pid === process.pid || (o.pid > 0 && pidAlive(o.pid));
}

const nonce = () => randomBytes(6).toString('hex');

export class Store {
  readonly tmp: string;
  readonly locks: string;
  readonly holders: string;
  /** Whether reads check an entry's bytes (see StoreOptions.verify). */
  readonly verifyOnRead: boolean;
  private swept: Promise<unknown> | undefined;
  private readonly held = new WeakMap<Scope, Map<string, Promise<boolean>>>();

  constructor(
    readonly root: string,
    o: StoreOptions = {},
  ) {
    this.tmp = join(root, 'tmp');
    this.locks = join(root, 'locks');
    this.holders = join(root, 'holders');
    this.verifyOnRead = (o.verify ?? 'read') === 'read';
  }

  dir(kind: Kind): string {
    return join(this.root, LAYOUT[kind].dir);
  }

  private name<K extends Kind>(kind: K, key: KeyOf[K]): string {
    const n = LAYOUT[kind].name(key);
    if (n === undefined) throw new Error(`"${key}" is not a ${kind} key`);
    return n;
  }

  path<K extends Kind>(kind: K, key: KeyOf[K]): string {
    return join(this.dir(kind), this.name(kind, key));
  }

  lockPath<K extends Kind>(kind: K, keyOrName: KeyOf[K] | string): string {
    const n = LAYOUT[kind].name(keyOrName) ?? (LOCK_NAME.test(keyOrName) ? keyOrName : undefined);
    if (n === undefined) throw new Error(`"${keyOrName}" is not a lock name`);
    return join(this.locks, `${kind}.${n}.lock`);
  }

  /** Held while one process writes a key (or does other work of a kind under a name): the others wait. */
  lock<K extends Kind>(kind: K, keyOrName: KeyOf[K] | string, o: LockOptions = {}): Promise<HeldLock> {
    return acquireLock(this.lockPath(kind, keyOrName), o);
  }

  /** A private temp for writing an entry, in the store (so publishing is a rename); removed when the scope closes. */
  async draft<K extends Kind>(kind: K, key: KeyOf[K], scope?: Scope): Promise<Draft> {
    const name = this.name(kind, key);
    await this.sweepOnce();
    await mkdir(this.tmp, { recursive: true, mode: 0o755 });
    const scratch = join(this.tmp, `${kind}.${name}.${ownerTag()}.${nonce()}`);
    await mkdir(scratch, { mode: 0o755 });
    const path = join(scratch, 'entry');
    if (LAYOUT[kind].shape === 'file') await writeFile(path, '', { flag: 'wx', mode: 0o644 });
    else await mkdir(path, { mode: 0o755 });
    let state: 'open' | 'published' | 'discarded' = 'open';
    const drop = async () => {
      if (state !== 'open') return;
      state = 'discarded';
      await rm(scratch, { recursive: true, force: true });
    };
    const release = scope?.defer(`remove ${scratch}`, drop);
    return {
      kind,
      key,
      path,
      scratch,
      get published() {
        return state === 'published';
      },
      publish: async (check?: Check): Promise<string> => {
        if (state !== 'open') throw new Error(`the draft of ${kind} ${key} was ${state} already`);
        await syncTree(path);
        if (check && !(await passes(path, check, true))) {
          throw new Img2vmError(
            'outputNotWritable',
            `the ${kind} ${key} written to ${scratch} does not read back as written`,
            'the disk holding the cache may be failing: check it, or set XDG_CACHE_HOME elsewhere',
          );
        }
        const final = await this.place(kind, key, path, check);
        state = 'published';
        await rm(scratch, { recursive: true, force: true });
        scope?.release(drop);
        return final;
      },
      discard: () => (release ?? drop)(),
    };
  }

  /** Renames a checked temp into place; a directory already there stands if whole, else it is moved away first. */
  private async place<K extends Kind>(kind: K, key: KeyOf[K], from: string, check: Check | undefined): Promise<string> {
    const final = this.path(kind, key);
    await mkdir(dirname(final), { recursive: true, mode: 0o755 });
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(from, final);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR' && code !== 'ENOTDIR') throw e;
        // A faster writer's entry (made from the same key, so the same content) is kept.
        if (attempt > 0 || (check && (await passes(final, check, false)))) break;
        // A broken leftover (an older version's interrupted removal, a damaged entry) gives way.
        await this.discard(kind, key);
      }
    }
    await syncDir(dirname(final));
    return final;
  }

  /**
   * Whether the entry is there and checks out (intact too when reads are verified); a damaged one is removed, so
   * it is made again. Takes no hold and records no use: for that, take() or ensure().
   */
  async verify<K extends Kind>(kind: K, key: KeyOf[K], check: Check): Promise<boolean> {
    const p = this.path(kind, key);
    const st = await lstat(p).catch(() => undefined);
    if (!st) return false;
    if (await passes(p, check, this.verifyOnRead)) return true;
    await this.discard(kind, key, st.ino);
    return false;
  }

  /** The entry for this run: held until the scope closes, used now, checked; undefined when absent or damaged. */
  async take<K extends Kind>(kind: K, key: KeyOf[K], scope: Scope, check: Check): Promise<string | undefined> {
    await this.hold(kind, key, scope);
    return (await this.verify(kind, key, check)) ? this.path(kind, key) : undefined;
  }

  /**
   * The entry, made once across processes when it is missing: taken if there, else made under the key's lock by
   * whichever process comes first while the others wait, then find it. Held for the scope either way.
   */
  async ensure<K extends Kind>(kind: K, key: KeyOf[K], o: EnsureOptions): Promise<{ path: string; made: boolean }> {
    const path = await this.take(kind, key, o.scope, o.check);
    if (path) return { path, made: false };
    const lock = await this.lock(kind, key, o.lock);
    const unlock = o.scope.defer(`unlock ${kind} ${key}`, () => lock.release());
    try {
      if (await this.verify(kind, key, o.check)) {
        await this.markUsed(kind, key);
        return { path: this.path(kind, key), made: false };
      }
      const d = await this.draft(kind, key, o.scope);
      try {
        await o.make(d);
        if (!d.published) await d.publish(o.check);
      } finally {
        await d.discard();
      }
      return { path: this.path(kind, key), made: true };
    } finally {
      await unlock();
    }
  }

  /**
   * Marks the key as used by this run until the scope closes (prune leaves it alone), and records the use. The key
   * need not have an entry yet: a run claims what it is about to fetch. False when the store is not writable.
   */
  async hold<K extends Kind>(kind: K, key: KeyOf[K], scope: Scope): Promise<boolean> {
    const id = `${kind}.${this.name(kind, key)}`;
    let mine = this.held.get(scope);
    if (!mine) this.held.set(scope, (mine = new Map()));
    let got = mine.get(id);
    if (!got) {
      const claims = mine;
      got = (async () => {
        const f = join(this.holders, `${id}.${ownerTag()}.${nonce()}`);
        try {
          await mkdir(this.holders, { recursive: true, mode: 0o755 });
          await writeFile(f, '', { flag: 'wx' });
        } catch {
          claims.delete(id);
          return false;
        }
        scope.defer(`release ${kind} ${key}`, async () => {
          claims.delete(id);
          await rm(f, { force: true });
        });
        return true;
      })();
      mine.set(id, got);
    }
    const ok = await got;
    await this.markUsed(kind, key);
    return ok;
  }

  /** Records a use: the entry's mtime (the bytes are untouched; a missing entry is left missing). */
  async markUsed<K extends Kind>(kind: K, key: KeyOf[K]): Promise<void> {
    const now = new Date();
    await utimes(this.path(kind, key), now, now).catch(() => undefined);
  }

  /** Takes an entry out of view at once (rename), then deletes it; with ino, only if it is still that file. */
  async discard<K extends Kind>(kind: K, key: KeyOf[K], ino?: number): Promise<void> {
    const p = this.path(kind, key);
    if (ino !== undefined && (await lstat(p).catch(() => undefined))?.ino !== ino) return;
    await mkdir(this.tmp, { recursive: true, mode: 0o755 });
    const gone = join(this.tmp, `${kind}.${this.name(kind, key)}.${ownerTag()}.${nonce()}.gone`);
    try {
      await rename(p, gone);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    await rm(gone, { recursive: true, force: true });
  }

  /** Who holds an entry and who writes its kind, now. */
  async status<K extends Kind>(kind: K, key: KeyOf[K]): Promise<{ holders: number[]; writers: number[] }> {
    const holders = (await this.liveHolders()).get(`${kind}.${this.name(kind, key)}`) ?? [];
    return { holders, writers: (await this.liveWriters()).get(kind) ?? [] };
  }

  /** Every entry of the kinds asked (all by default), with its size, last use, holders and writers. */
  async entries(kinds: readonly Kind[] = KINDS): Promise<StoreEntry[]> {
    const holders = await this.liveHolders();
    const writers = await this.liveWriters();
    const out: StoreEntry[] = [];
    for (const kind of kinds) {
      const l = LAYOUT[kind];
      for (const name of (await readdir(this.dir(kind)).catch(() => [] as string[])).sort()) {
        const key = l.key(name);
        const p = join(this.dir(kind), name);
        const st = key === undefined ? undefined : await lstat(p).catch(() => undefined);
        if (!key || !st || (l.shape === 'file' ? !st.isFile() : !st.isDirectory())) continue;
        out.push({
          kind,
          key,
          path: p,
          bytes: l.shape === 'file' ? st.size : await treeBytes(p),
          lastUsed: st.mtimeMs,
          holders: holders.get(`${kind}.${name}`) ?? [],
          writers: writers.get(kind) ?? [],
        });
      }
    }
    return out;
  }

  /** Pids of live holders by "<kind>.<name>"; holder files of processes that are gone are removed on the way. */
  private async liveHolders(): Promise<Map<string, number[]>> {
    const out = new Map<string, number[]>();
    for (const n of await readdir(this.holders).catch(() => [] as string[])) {
      const o = parseOwned(n);
      const st = await stat(join(this.holders, n)).catch(() => undefined);
      if (!st) continue;
      if (!o || o.gone || !ownerLives(o, st.mtimeMs)) {
        await rm(join(this.holders, n), { force: true }).catch(() => undefined);
        continue;
      }
      const id = `${o.kind}.${o.name}`;
      out.set(id, [...new Set([...(out.get(id) ?? []), o.pid])]);
    }
    return out;
  }

  /** Pids of live processes writing each kind: their drafts in tmp/ and their locks. */
  private async liveWriters(): Promise<Map<Kind, number[]>> {
    const out = new Map<Kind, number[]>();
    const add = (kind: Kind, pid: number) => out.set(kind, [...new Set([...(out.get(kind) ?? []), pid])]);
    for (const n of await readdir(this.tmp).catch(() => [] as string[])) {
      const o = parseOwned(n);
      if (!o || o.gone) continue;
      const st = await stat(join(this.tmp, n)).catch(() => undefined);
      if (st && ownerLives(o, st.mtimeMs)) add(o.kind, o.pid);
    }
    for (const n of await readdir(this.locks).catch(() => [] as string[])) {
      const kind = n.split('.')[0]!;
      if (!isKind(kind) || !n.endsWith('.lock')) continue;
      const pid = await lockHolder(join(this.locks, n));
      if (pid !== undefined) add(kind, pid);
    }
    return out;
  }

  /**
   * Removes what killed processes left: temps (drafts and half-done removals) of pids that are gone on this host,
   * those of other hosts or unknown names after a day, and holder files of dead processes. Returns what was removed.
   */
  async sweep(): Promise<string[]> {
    const gone: string[] = [];
    for (const n of await readdir(this.tmp).catch(() => [] as string[])) {
      const p = join(this.tmp, n);
      const o = parseOwned(n);
      const st = await lstat(p).catch(() => undefined);
      if (!st || (o ? ownerLives(o, st.mtimeMs) : Date.now() - st.mtimeMs < FOREIGN_MAX_AGE)) continue;
      await rm(p, { recursive: true, force: true }).then(
        () => gone.push(p),
        () => undefined,
      );
    }
    await this.liveHolders();
    return gone;
  }

  private sweepOnce(): Promise<unknown> {
    return (this.swept ??= this.sweep().catch(() => undefined));
  }
}

async function passes(p: string, check: Check, deep: boolean): Promise<boolean> {
  try {
    if (!(await check.whole(p))) return false;
    return !deep || !check.intact || (await check.intact(p));
  } catch {
    return false;
  }
}

const stores = new Map<string, Store>();

/** The store at root (default: img2vm's cache directory), one instance per process so its sweep runs once. */
export function openStore(root: string = cacheDir(), o: StoreOptions = {}): Store {
  const id = `${o.verify ?? 'read'}\0${root}`;
  let s = stores.get(id);
  if (!s) stores.set(id, (s = new Store(root, o)));
  return s;
}
