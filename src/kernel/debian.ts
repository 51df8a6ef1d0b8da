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

/** The newest cached archive kernel of a suite (from any mirror), for working offline. */
async function newestCached(
  cache: KernelCache,
  suite: string,
): Promise<{ name: string; record: TreeRecord } | undefined> {
  const all = (await cache.allTrees()).filter(
    (t) => t.record.source.kind === 'debian-archive' && t.record.source.suite === suite,
  );
  return all.sort((a, b) => compareDebVersions(packageVersionOf(b.record), packageVersionOf(a.record)))[0];
}

/** A peek's resolution, for the fetch that follows it in the same run (same index, same work directory). */
const peekedInRun = new Map<string, ResolvedKernel>();

export async function debianArchiveKernel(
  suite: string,
  ctx: RunContext,
  o: KernelOptions,
  cache: KernelCache,
): Promise<KernelBundle> {
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
  let now = o.now?.() ?? new Date();
  const key = indexKey(mirror, security, suite, arch);
  const maxAge = o.maxAgeMs ?? DAY;
  const set = suiteSetKey(
    arch,
    suiteSources(suite, mirror, security).map((s) => s.suite),
  );

  const fromIndex = async (idx: IndexRecord | undefined): Promise<KernelBundle | undefined> => {
    if (!idx) return undefined;
    const r = await cache.take(idx.tree, ctx.scope);
    return r ? bundleOf(cache.treeDir(idx.tree), r) : undefined;
  };
  const fresh = (idx: IndexRecord | undefined): boolean =>
    !!idx && now.getTime() - Date.parse(idx.checkedAt) < maxAge && now.getTime() >= Date.parse(idx.checkedAt);
  // A cached answer is not fresh once a newer kernel of the same suites was seen, through this mirror or another.
  const usable = async (idx: IndexRecord | undefined): Promise<boolean> => {
    if (o.refresh || !fresh(idx)) return false;
    if (!olderThanSeen(await readSeen(cache), set, idx!.packageVersion)) return true;
    log(
      ctx,
      'debug',
      `the cached ${suite} kernel ${idx!.packageVersion} is older than one seen since; asking the archive`,
    );
    return false;
  };
  // Without the archive: the newer of this mirror's last answer and the newest cached kernel of the suite, so that
  // an attacker who cuts the connection cannot bring back an older kernel either.
  const offlineFallback = async (why: string, idx: IndexRecord | undefined): Promise<KernelBundle | undefined> => {
    const viaIndex = idx && (await cache.take(idx.tree, ctx.scope));
    const n = await newestCached(cache, suite);
    const newer =
      n &&
      viaIndex &&
      n.name !== idx!.tree &&
      compareDebVersions(packageVersionOf(n.record), packageVersionOf(viaIndex)) > 0;
    if (viaIndex && !newer) {
      const b = bundleOf(cache.treeDir(idx!.tree), viaIndex);
      log(ctx, 'warn', `${why}; using the cached kernel ${b.version} (${b.origin}), last checked ${idx!.checkedAt}`);
      return b;
    }
    const record = n && (await cache.take(n.name, ctx.scope));
    if (!n || !record) return undefined;
    log(ctx, 'warn', `${why}; using the newest cached ${suite} kernel ${record.version} (${record.origin})`);
    return bundleOf(cache.treeDir(n.name), record);
  };

  let idx = await cache.readIndex(key);
  if (await usable(idx)) {
    const b = await fromIndex(idx);
    if (b) {
      log(ctx, 'debug', `${b.version} from the cache (checked ${idx!.checkedAt})`);
      return b;
    }
  }
  if (o.offline) {
    const b = await offlineFallback('offline', idx);
    if (b) return b;
    throw new Img2vmError(
      'imageNotFound',
      `no ${suite} kernel is cached, and the archive may not be asked (offline)`,
      'run once with network access, or pass --kernel with a local kernel',
    );
  }

  const lock = await cache.lock(key, {
    signal: ctx.signal,
    onWait: (pid) => log(ctx, 'info', `waiting for img2vm process ${pid}, which is fetching the same kernel`),
  });
  try {
    // The clock again: while this run waited, the holder may have cached an answer checked after the first reading,
    // and an answer checked later than `now` is never fresh (it would be fetched all over again).
    now = o.now?.() ?? new Date();
    idx = await cache.readIndex(key);
    if (await usable(idx)) {
      const b = await fromIndex(idx);
      if (b) return b;
    }
    let resolved: ResolvedKernel;
    const memo = `${key}\0${ctx.work}`;
    const peeked = peekedInRun.get(memo);
    peekedInRun.delete(memo);
    try {
      resolved =
        peeked ??
        (await resolveArchiveKernel({
          mirror,
          securityMirror: security,
          suite,
          arch,
          keyring: o.keyring ?? DEBIAN_KEYRING,
          now,
          allowExpired: o.allowExpired ?? false,
          http: { ...o.http, signal: ctx.signal, log: (m) => log(ctx, 'debug', m) },
          work: ctx.work,
          warn: (m) => log(ctx, 'warn', m),
          debug: (m) => log(ctx, 'debug', m),
        }));
    } catch (e) {
      if (e instanceof ArchiveUnreachableError) {
        const b = await offlineFallback(`cannot reach ${e.base ?? mirror}`, idx);
        if (b) return b;
      }
      throw e;
    }
    const img = resolved.image;
    // Before anything is downloaded or cached: nothing older than what was seen, then remember what is seen now.
    const seen = await readSeen(cache);
    const releases = resolved.suites.map((s) => ({
      codename: s.release.codename ?? s.source.suite,
      date: s.release.date,
      at: s.source.base,
    }));
    checkReleaseDates(seen, releases);
    checkKernelVersion(seen, { set, package: img.package, version: img.version, at: resolved.from.base });
    await recordSeen(
      cache,
      { releases, kernel: { set, package: img.package, version: img.version, at: resolved.from.base, seenAt: now } },
      ctx.signal,
    );
    const name = treeName(img.sha256);
    const origin = `Debian ${resolved.from.suite} ${img.package} ${img.version}`;
    let record = await cache.take(name, ctx.scope);
    if (!record && o.peek) {
      peekedInRun.set(memo, resolved);
      return { version: '', vmlinuz: '', origin, id: `sha256:${img.sha256}`, peeked: true };
    }
    if (record) log(ctx, 'debug', `${img.package} ${img.version} is already cached`);
    else {
      log(
        ctx,
        'info',
        `fetching ${img.package} ${img.version} from ${resolved.from.suite} (${(img.size / 1e6).toFixed(1)} MB)`,
      );
      record = await buildTree(
        cache,
        name,
        ctx,
        resolved.url,
        async (collector, scratch) => {
          const deb = join(scratch, 'kernel.deb');
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
                  path: cache.root,
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
          await collectDeb(deb, collector, ctx.signal);
        },
        () => ({
          id: `sha256:${img.sha256}`,
          origin,
          source: {
            kind: 'debian-archive',
            suite,
            from: resolved.from.suite,
            package: img.package,
            packageVersion: img.version,
            url: resolved.url,
            sha256: img.sha256,
            size: img.size,
          },
        }),
      );
    }
    await cache.writeIndex(key, {
      format: 1,
      mirror,
      securityMirror: security,
      suite,
      arch,
      tree: name,
      packageVersion: img.version,
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
