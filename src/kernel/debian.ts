// Debian's cloud kernel for a suite: served from the cache while its index record is fresh, else resolved and fetched once (under a lock).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { isNoSpace, noSpaceError } from '../core/no-space.js';
import {
  ArchiveUnreachableError,
  defaultSecurityMirror,
  DEFAULT_MIRROR,
  resolveArchiveKernel,
  suiteSources,
  type ResolvedKernel,
} from './archive.js';
import { buildTree } from './build.js';
import { bundleOf, type KernelBundle } from './bundle.js';
import { KernelCache, type IndexRecord, type TreeRecord } from './cache.js';
import { collectDeb } from './deb.js';
import { compareDebVersions } from './debversion.js';
import { DEBIAN_KEYRING } from './gpgv.js';
import { downloadFile, HttpError } from './http.js';
import type { KernelOptions } from './options.js';
import { checkKernelVersion, checkReleaseDates, olderThanSeen, readSeen, recordSeen, suiteSetKey } from './seen.js';

const DAY = 24 * 3600_000;

function log(ctx: RunContext, level: 'info' | 'warn' | 'debug', message: string): void {
  ctx.sink({ type: 'log', level, stage: 'guest', message: `kernel: ${message}` });
}

export function indexKey(mirror: string, security: string | null, suite: string, arch: string): string {
  return createHash('sha256')
    .update(JSON.stringify([mirror, security, suite, arch]))
    .digest('hex')
    .slice(0, 32);
}

function treeName(debSha256: string): string {
  return `sha256-${debSha256}`;
}

const packageVersionOf = (r: TreeRecord): string =>
  r.source.kind === 'debian-archive' ? r.source.packageVersion : '0';

/** The newest cached archive kernel of a suite and architecture (from any mirror), for working offline. */
async function newestCached(
  cache: KernelCache,
  suite: string,
  arch: string,
): Promise<{ name: string; record: TreeRecord } | undefined> {
  const all = (await cache.allTrees()).filter(
    (t) =>
      t.record.source.kind === 'debian-archive' &&
      t.record.source.suite === suite &&
      // Debian names its kernel packages after their architecture (linux-image-6.12.9+deb13-cloud-arm64).
      t.record.source.package.endsWith(`-${arch}`),
  );
  return all.sort((a, b) => compareDebVersions(packageVersionOf(b.record), packageVersionOf(a.record)))[0];
}

/** One archive fetch: where from, for which suite and architecture, and the cache it answers from. */
interface Fetch {
  suite: string;
  ctx: RunContext;
  o: KernelOptions;
  cache: KernelCache;
  mirror: string;
  security: string | null;
  arch: string;
  /** The index record's key (mirror, security mirror, suite, architecture). */
  key: string;
  /** The suites and architecture, as seen.json compares kernels. */
  set: string;
}

/** The mirror (checked), the security mirror and the architecture a fetch asks. */
function fetchOf(suite: string, ctx: RunContext, o: KernelOptions, cache: KernelCache): Fetch {
  const mirror = (o.mirror ?? DEFAULT_MIRROR).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(mirror))
    throw new Img2vmError(
      'usage',
      `--kernel-mirror ${mirror} is not an http(s) URL`,
      `e.g. --kernel-mirror ${DEFAULT_MIRROR}`,
    );
  const security =
    o.securityMirror === undefined
      ? defaultSecurityMirror(mirror)
      : o.securityMirror === null
        ? null
        : o.securityMirror.replace(/\/+$/, '');
  const arch = o.arch ?? 'amd64';
  const set = suiteSetKey(
    arch,
    suiteSources(suite, mirror, security).map((s) => s.suite),
  );
  return { suite, ctx, o, cache, mirror, security, arch, key: indexKey(mirror, security, suite, arch), set };
}

/**
 * The kernel a cached index record names, when the record is fresh and no newer kernel of the same suites was
 * seen since (through this mirror or another).
 */
async function cachedAnswer(f: Fetch, idx: IndexRecord | undefined, now: Date): Promise<KernelBundle | undefined> {
  const maxAge = f.o.maxAgeMs ?? DAY;
  if (!idx || f.o.refresh) return undefined;
  const age = now.getTime() - Date.parse(idx.checkedAt);
  if (!(age < maxAge && age >= 0)) return undefined;
  if (olderThanSeen(await readSeen(f.cache), f.set, idx.packageVersion)) {
    log(
      f.ctx,
      'debug',
      `the cached ${f.suite} kernel ${idx.packageVersion} is older than one seen since; asking the archive`,
    );
    return undefined;
  }
  const r = await f.cache.take(idx.tree, f.ctx.scope);
  return r ? bundleOf(f.cache.treeDir(idx.tree), r) : undefined;
}

/**
 * Without the archive: the newer of this mirror's last answer and the newest cached kernel of the suite, so that
 * an attacker who cuts the connection cannot bring back an older kernel either.
 */
async function offlineFallback(f: Fetch, why: string, idx: IndexRecord | undefined): Promise<KernelBundle | undefined> {
  const { cache, ctx, suite } = f;
  const viaIndex = idx && (await cache.take(idx.tree, ctx.scope));
  const n = await newestCached(cache, suite, f.arch);
  const newer =
    n &&
    viaIndex &&
    n.name !== idx.tree &&
    compareDebVersions(packageVersionOf(n.record), packageVersionOf(viaIndex)) > 0;
  if (idx && viaIndex && !newer) {
    const b = bundleOf(cache.treeDir(idx.tree), viaIndex);
    log(ctx, 'warn', `${why}; using the cached kernel ${b.version} (${b.origin}), last checked ${idx.checkedAt}`);
    return b;
  }
  const record = n && (await cache.take(n.name, ctx.scope));
  if (!n || !record) return undefined;
  log(ctx, 'warn', `${why}; using the newest cached ${suite} kernel ${record.version} (${record.origin})`);
  return bundleOf(cache.treeDir(n.name), record);
}

/** A peek's resolution, for the fetch that follows it in the same run (same index, same work directory). */
const peekedInRun = new Map<string, ResolvedKernel>();

/**
 * KernelOptions.peek: a kernel the cache does not hold is only named (its id is the package's SHA-256 in the signed
 * index), and the resolution is kept for the fetch that follows in the same run; undefined when it is cached.
 */
async function peekOnly(f: Fetch, resolved: ResolvedKernel): Promise<KernelBundle | undefined> {
  const img = resolved.image;
  if (await f.cache.take(treeName(img.sha256), f.ctx.scope)) return undefined;
  peekedInRun.set(`${f.key}\0${f.ctx.work}`, resolved);
  const origin = `Debian ${resolved.from.suite} ${img.package} ${img.version}`;
  return { version: '', vmlinuz: '', origin, id: `sha256:${img.sha256}`, peeked: true };
}

/** Asks the archive which kernel is current; an unreachable archive falls back to the cache when it can. */
async function resolveOrFallback(
  f: Fetch,
  idx: IndexRecord | undefined,
  now: Date,
): Promise<ResolvedKernel | KernelBundle> {
  const { ctx, o } = f;
  const memo = `${f.key}\0${ctx.work}`;
  const peeked = peekedInRun.get(memo);
  peekedInRun.delete(memo);
  if (peeked) return peeked;
  try {
    return await resolveArchiveKernel({
      mirror: f.mirror,
      securityMirror: f.security,
      suite: f.suite,
      arch: f.arch,
      keyring: o.keyring ?? DEBIAN_KEYRING,
      now,
      allowExpired: o.allowExpired ?? false,
      http: { ...o.http, signal: ctx.signal, log: (m) => log(ctx, 'debug', m) },
      work: ctx.work,
      warn: (m) => log(ctx, 'warn', m),
      debug: (m) => log(ctx, 'debug', m),
    });
  } catch (e) {
    if (e instanceof ArchiveUnreachableError) {
      const b = await offlineFallback(f, `cannot reach ${e.base ?? f.mirror}`, idx);
      if (b) return b;
    }
    throw e;
  }
}

/** Before anything is downloaded or cached: nothing older than what was seen, then remember what is seen now. */
async function checkAndRecordSeen(f: Fetch, resolved: ResolvedKernel, now: Date): Promise<void> {
  const img = resolved.image;
  const seen = await readSeen(f.cache);
  const releases = resolved.suites.map((s) => ({
    codename: s.release.codename ?? s.source.suite,
    date: s.release.date,
    at: s.source.base,
  }));
  checkReleaseDates(seen, releases);
  checkKernelVersion(seen, { set: f.set, package: img.package, version: img.version, at: resolved.from.base });
  await recordSeen(
    f.cache,
    {
      releases,
      kernel: { set: f.set, package: img.package, version: img.version, at: resolved.from.base, seenAt: now },
    },
    f.ctx.signal,
  );
}

/** Downloads the kernel package into `deb` and checks it against the signed index's hash. */
async function downloadKernelDeb(f: Fetch, resolved: ResolvedKernel, deb: string): Promise<void> {
  const { ctx, o } = f;
  const img = resolved.image;
  let sha: string;
  try {
    sha = await downloadFile(resolved.url, deb, {
      ...o.http,
      signal: ctx.signal,
      size: img.size,
      onProgress: o.onProgress,
      log: (m) => log(ctx, 'debug', m),
    });
  } catch (e) {
    if (isNoSpace(e))
      throw noSpaceError(
        {
          area: 'cache',
          what: `the kernel package ${img.package}`,
          path: f.cache.root,
          needBytes: img.size,
          needNote: 'the package; its unpacked tree needs more',
        },
        e,
      );
    if (e instanceof HttpError) {
      const kind = e.reason === 'protocol' ? 'badImage' : 'imageNotFound';
      throw new Img2vmError(
        kind,
        `cannot download ${resolved.url}: ${e.message}`,
        'the mirror may be mid-update or unreachable; try again, or another --kernel-mirror',
      );
    }
    throw e;
  }
  if (sha !== img.sha256) {
    throw new Img2vmError(
      'badImage',
      `${resolved.url} has SHA-256 ${sha}, but the signed index says ${img.sha256}`,
      'the mirror, a proxy or the network altered the package; try again or another --kernel-mirror (nothing was cached)',
    );
  }
}

/** The resolved kernel's tree: already in the cache, or downloaded, verified and unpacked into it. */
async function kernelTree(f: Fetch, resolved: ResolvedKernel): Promise<{ name: string; record: TreeRecord }> {
  const { cache, ctx } = f;
  const img = resolved.image;
  const name = treeName(img.sha256);
  const cached = await cache.take(name, ctx.scope);
  if (cached) {
    log(ctx, 'debug', `${img.package} ${img.version} is already cached`);
    return { name, record: cached };
  }
  log(
    ctx,
    'info',
    `fetching ${img.package} ${img.version} from ${resolved.from.suite} (${(img.size / 1e6).toFixed(1)} MB)`,
  );
  const record = await buildTree(
    cache,
    name,
    ctx,
    resolved.url,
    async (collector, scratch) => {
      const deb = join(scratch, 'kernel.deb');
      await downloadKernelDeb(f, resolved, deb);
      await collectDeb(deb, collector, ctx.signal);
    },
    () => ({
      id: `sha256:${img.sha256}`,
      origin: `Debian ${resolved.from.suite} ${img.package} ${img.version}`,
      source: {
        kind: 'debian-archive',
        suite: f.suite,
        from: resolved.from.suite,
        package: img.package,
        packageVersion: img.version,
        url: resolved.url,
        sha256: img.sha256,
        size: img.size,
      },
    }),
  );
  return { name, record };
}

/**
 * Debian's cloud kernel of a suite for an architecture (linux-image-cloud-<arch>): the cached answer while fresh,
 * else resolved in the signed indexes, checked against what was seen, fetched, verified and cached once (under a
 * lock); offline or unreachable, the newest cached kernel that is not older than the last answer.
 */
export async function debianArchiveKernel(
  suite: string,
  ctx: RunContext,
  o: KernelOptions,
  cache: KernelCache,
): Promise<KernelBundle> {
  const f = fetchOf(suite, ctx, o, cache);
  let now = o.now?.() ?? new Date();
  let idx = await cache.readIndex(f.key);
  const fresh = await cachedAnswer(f, idx, now);
  if (fresh) {
    log(ctx, 'debug', `${fresh.version} from the cache (checked ${idx!.checkedAt})`);
    return fresh;
  }
  if (o.offline) {
    const b = await offlineFallback(f, 'offline', idx);
    if (b) return b;
    throw new Img2vmError(
      'imageNotFound',
      `no ${suite} kernel for ${f.arch} is cached, and the archive may not be asked (offline)`,
      'run once with network access, or pass --kernel with a local kernel',
    );
  }
  const lock = await cache.lock(f.key, {
    signal: ctx.signal,
    onWait: (pid) => log(ctx, 'info', `waiting for img2vm process ${pid}, which is fetching the same kernel`),
  });
  try {
    // The clock again: while this run waited, the holder may have cached an answer checked after the first reading,
    // and an answer checked later than `now` is never fresh (it would be fetched all over again).
    now = o.now?.() ?? new Date();
    idx = await cache.readIndex(f.key);
    const meanwhile = await cachedAnswer(f, idx, now);
    if (meanwhile) return meanwhile;
    const resolved = await resolveOrFallback(f, idx, now);
    if (!('suites' in resolved)) return resolved;
    await checkAndRecordSeen(f, resolved, now);
    const peek = o.peek ? await peekOnly(f, resolved) : undefined;
    if (peek) return peek;
    const { name, record } = await kernelTree(f, resolved);
    await cache.writeIndex(f.key, {
      format: 1,
      mirror: f.mirror,
      securityMirror: f.security,
      suite,
      arch: f.arch,
      tree: name,
      packageVersion: resolved.image.version,
      checkedAt: now.toISOString(),
      releases: Object.fromEntries(resolved.suites.map((s) => [s.source.suite, s.release.date.toISOString()])),
    });
    return bundleOf(cache.treeDir(name), record);
  } finally {
    await lock.release();
  }
}

/** A kernel .deb on disk: unpacked once per content hash. */
export async function localDebKernel(path: string, ctx: RunContext, cache: KernelCache): Promise<KernelBundle> {
  const h = createHash('sha256');
  let size = 0;
  try {
    for await (const c of createReadStream(path)) {
      h.update(c as Buffer);
      size += (c as Buffer).length;
    }
  } catch (e) {
    throw new Img2vmError(
      'usage',
      `cannot read the kernel package ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      'give the path of a linux-image .deb',
    );
  }
  const sha = h.digest('hex');
  const name = treeName(sha);
  const record =
    (await cache.take(name, ctx.scope)) ??
    (await buildTree(
      cache,
      name,
      ctx,
      path,
      (collector) => collectDeb(path, collector, ctx.signal),
      () => ({
        id: `sha256:${sha}`,
        origin: `package ${path}`,
        source: { kind: 'deb', path, sha256: sha, size },
      }),
    ));
  return bundleOf(cache.treeDir(name), record);
}
