// Pulls an image from a registry into the blob cache (verified on entry, three layers at a time) and opens it from there.
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { isNoSpace, noSpaceError } from '../core/no-space.js';
import { progress } from '../core/events.js';
import { lookupCredentials } from './auth.js';
import { BlobCache, cacheError } from './blob-cache.js';
import { MAX_JSON, digestMismatch, sha256, verifyBytes } from './digest.js';
import { ImageConfigSchema, type ImageConfig, type Layer, type SourceImage } from './image.js';
import { parseDocument, parseJson, validate, type Descriptor, type ImageManifest } from './manifest.js';
import { formatPlatform, platformMatches, selectPlatform, type Platform } from './platform.js';
import { canonicalReference, isLoopbackRegistry, type DockerReference } from './reference.js';
import { RegistryClient, RegistryError } from './registry.js';

export type PullPolicy = 'always' | 'missing' | 'never';

export interface PullContext {
  ctx: RunContext;
  cache: BlobCache;
  pull: PullPolicy;
  platform: Platform;
  /** Whether the user asked for the platform (then a single-platform image must match it). */
  platformExplicit: boolean;
  insecureRegistries: readonly string[];
  /** Tuning for tests. */
  registry?: { tries?: number; backoffMs?: number; timeoutMs?: number };
  env?: NodeJS.ProcessEnv;
}

const MAX_NESTING = 4;
const PARALLEL = 3;

function debug(ctx: RunContext, message: string): void {
  ctx.sink({ type: 'log', level: 'debug', stage: 'source', message });
}

export function makeClient(ref: DockerReference, p: PullContext): RegistryClient {
  const insecure =
    isLoopbackRegistry(ref.domain) ||
    p.insecureRegistries.some((r) => r.replace(/^https?:\/\//, '').replace(/\/+$/, '') === ref.domain);
  return new RegistryClient({
    domain: ref.domain,
    plainHttp: insecure,
    signal: p.ctx.signal,
    log: (m) => debug(p.ctx, m),
    credentials: () =>
      lookupCredentials(ref.domain, {
        env: p.env,
        signal: p.ctx.signal,
        warn: (m) => p.ctx.sink({ type: 'log', level: 'warn', stage: 'source', message: m }),
      }),
    ...p.registry,
  });
}

/** What the steps of a pull share: the image's name, the lazily made registry client, holds on what the run reads. */
interface Pull {
  ref: DockerReference;
  name: string;
  p: PullContext;
  /** The registry client, made on first use; refused under --pull never. */
  registry(): RegistryClient;
  /** Holds a blob until the run ends, so a concurrent `cache prune` cannot take it away meanwhile. */
  hold(digest: string): Promise<void>;
}

function startPull(ref: DockerReference, p: PullContext): Pull {
  const name = canonicalReference(ref);
  let client: RegistryClient | undefined;
  return {
    ref,
    name,
    p,
    registry: () => {
      if (p.pull === 'never') {
        throw new RegistryError(
          'notFound',
          'imageNotFound',
          `${name} is not (completely) in the local cache, and --pull never forbids the registry`,
          'pull it once with --pull missing, or use a local source',
        );
      }
      return (client ??= makeClient(ref, p));
    },
    hold: (digest) => p.cache.hold(digest, p.ctx.scope),
  };
}

/**
 * Resolves ref to an image: the manifest from the cache or the registry (by the pull policy),
 * then config and layers into the cache. Every document and blob is checked against its digest
 * and declared size before it is used or kept.
 */
export async function openRegistryImage(ref: DockerReference, original: string, p: PullContext): Promise<SourceImage> {
  const pull = startPull(ref, p);
  const { top, digest: topDigest } = await topDocument(pull);
  const { manifest, digest: manifestDigest } = await resolveManifest(top, topDigest, pull.name, p, (d) =>
    nestedDocument(pull, d),
  );
  const { config, configBytes } = await imageConfig(pull, manifest);
  await ensureLayers(pull, manifest);
  const layers: Layer[] = manifest.layers.map((l) => ({
    name: l.digest,
    digest: l.digest,
    size: l.size,
    mediaType: l.mediaType,
    open: async () => p.cache.open(l.digest, l.size, `layer ${l.digest} in the cache`),
  }));
  const id = manifest.config.digest;
  return { ref: original, id, config, configBytes, layers, manifestDigest, transport: 'docker' };
}

/**
 * The top-level document: by digest it is immutable, so the cache always answers; a tag is looked up again only
 * with --pull always.
 */
async function topDocument(pull: Pull): Promise<{ top: { bytes: Buffer; contentType?: string }; digest: string }> {
  const { ref, name, p } = pull;
  let topDigest = ref.digest;
  if (!topDigest && p.pull !== 'always') topDigest = await p.cache.getRef(name);
  if (topDigest) {
    await pull.hold(topDigest);
    const bytes = await p.cache.read(topDigest, MAX_JSON);
    if (bytes) {
      debug(p.ctx, `${name}: manifest ${topDigest} from the cache`);
      return { top: { bytes }, digest: topDigest };
    }
  }
  const got = await pull.registry().getManifest(ref.path, ref.digest ?? ref.tag!);
  const digest = sha256(got.bytes);
  if (ref.digest && digest !== ref.digest) throw digestMismatch(`manifest ${name}`, ref.digest, digest);
  if (got.digest && /^sha256:/.test(got.digest) && got.digest !== digest)
    throw digestMismatch(`manifest ${name} (Docker-Content-Digest)`, got.digest, digest);
  await pull.hold(digest);
  await p.cache.put(digest, got.bytes).catch((e) => {
    throw cacheError(p.cache.root, e);
  });
  if (!ref.digest) await p.cache.setRef(name, digest).catch(() => {});
  return { top: got, digest };
}

/** A manifest an index points to: from the cache, else from the registry (checked, then kept). */
async function nestedDocument(pull: Pull, d: Descriptor): Promise<{ bytes: Buffer; contentType?: string }> {
  const { p } = pull;
  await pull.hold(d.digest);
  const cached = await p.cache.read(d.digest, MAX_JSON);
  if (cached) return { bytes: cached };
  const got = await pull.registry().getManifest(pull.ref.path, d.digest);
  verifyBytes(got.bytes, d.digest, `manifest ${d.digest} of ${pull.name}`, d.size);
  await p.cache.put(d.digest, got.bytes).catch((e) => {
    throw cacheError(p.cache.root, e);
  });
  return got;
}

/** The image config, into the cache if missing, parsed, and matched against --platform when that was asked. */
async function imageConfig(pull: Pull, manifest: ImageManifest): Promise<{ config: ImageConfig; configBytes: Buffer }> {
  const { name, p } = pull;
  const cfgDesc = manifest.config;
  if (cfgDesc.size > MAX_JSON)
    throw new Img2vmError(
      'badImage',
      `the image config of ${name} declares ${cfgDesc.size} bytes; more than ${MAX_JSON} is refused`,
      'the image is hostile or broken',
    );
  await pull.hold(cfgDesc.digest);
  let configBytes = await p.cache.read(cfgDesc.digest, MAX_JSON);
  if (!configBytes) {
    await fetchBlob(pull.registry(), pull.ref.path, cfgDesc, p, () => {});
    configBytes = await p.cache.read(cfgDesc.digest, MAX_JSON);
    if (!configBytes)
      throw new Img2vmError('badImage', `the image config ${cfgDesc.digest} vanished from the cache`, 'try again');
  }
  const what = `image config ${cfgDesc.digest}`;
  const config = validate(ImageConfigSchema, parseJson(configBytes, what), what);
  const variant = (config as { variant?: string }).variant;
  if (p.platformExplicit && !platformMatches({ os: config.os, architecture: config.architecture, variant }, p.platform))
    throw new Img2vmError(
      'imageNotFound',
      `${name} is ${config.os}/${config.architecture}, not ${formatPlatform(p.platform)}`,
      'choose its platform with --platform, or another image',
    );
  return { config, configBytes };
}

/**
 * The layers in the cache, three fetched at a time, each only once it is verified there. A cached layer was
 * verified when it entered the store and is trusted (its size is checked); with --verify-cache it is hashed
 * again, and a damaged one fetched anew.
 */
async function ensureLayers(pull: Pull, manifest: ImageManifest): Promise<void> {
  const { name, p } = pull;
  const unique = manifest.layers.filter((l, i) => manifest.layers.findIndex((m) => m.digest === l.digest) === i);
  const missing: Descriptor[] = [];
  await mapLimit(unique, PARALLEL, p.ctx.signal, async (l) => {
    await pull.hold(l.digest);
    if (!(await p.cache.has(l.digest, l.size)) || !(await p.cache.verify(l.digest, l.size))) missing.push(l);
  });
  if (!missing.length) {
    if (manifest.layers.length) debug(p.ctx, `${name}: all ${manifest.layers.length} layer(s) in the cache`);
    return;
  }
  const c = pull.registry();
  const total = missing.reduce((s, l) => s + l.size, 0);
  const t0 = performance.now();
  const count = `${missing.length} layer${missing.length === 1 ? '' : 's'}`;
  const bar = progress(p.ctx.sink, 'source', 'bytes', total, count);
  try {
    await mapLimit(missing, PARALLEL, p.ctx.signal, (l, signal) =>
      fetchBlob(
        c,
        pull.ref.path,
        l,
        p,
        progressReporter(p.ctx, l, (n) => bar.add(n)),
        signal,
      ),
    );
  } catch (e) {
    // What the user must make room for is every layer still missing, not the rest of the one that failed.
    if (isNoSpace(e))
      throw noSpaceError(
        {
          area: 'cache',
          what: `the layers of ${name}`,
          path: p.cache.blobs,
          needBytes: total,
          needNote: `${count} not cached yet`,
        },
        e,
      );
    throw e;
  }
  bar.end();
  const s = (performance.now() - t0) / 1000;
  const rate = (total / 1e6 / Math.max(s, 0.001)).toFixed(1);
  debug(p.ctx, `${name}: pulled ${missing.length} layer(s), ${mb(total)} in ${s.toFixed(1)} s (${rate} MB/s)`);
}

/** Descends from an index (possibly nested) to the platform's image manifest. */
export async function resolveManifest(
  top: { bytes: Buffer; contentType?: string },
  topDigest: string,
  name: string,
  p: { platform: Platform },
  fetch: (d: Descriptor) => Promise<{ bytes: Buffer; contentType?: string }>,
): Promise<{ manifest: ImageManifest; digest: string }> {
  let doc = top;
  let digest = topDigest;
  for (let depth = 0; ; depth++) {
    const parsed = parseDocument(doc.bytes, `manifest ${digest} of ${name}`, doc.contentType);
    if (parsed.kind === 'manifest') return { manifest: parsed.manifest, digest };
    if (depth >= MAX_NESTING)
      throw new Img2vmError(
        'badImage',
        `${name}: indexes nested more than ${MAX_NESTING} deep`,
        'the image is hostile or broken',
      );
    // A lone entry without a platform (a nested index, say) is descended into whatever the platform.
    const only =
      parsed.index.manifests.length === 1 && !parsed.index.manifests[0]!.platform
        ? parsed.index.manifests[0]
        : undefined;
    const d = only ?? selectPlatform(parsed.index.manifests, p.platform, name);
    if (d.size > MAX_JSON)
      throw new Img2vmError(
        'badImage',
        `${name}: manifest ${d.digest} declares ${d.size} bytes; more than ${MAX_JSON} is refused`,
        'the image is hostile or broken',
      );
    doc = await fetch(d);
    digest = d.digest;
  }
}

/** Fetches a blob into the cache once across processes: under its lock, unless a holder has fetched it meanwhile. */
async function fetchBlob(
  c: RegistryClient,
  repo: string,
  d: Descriptor,
  p: PullContext,
  onProgress: (n: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const sig = signal ?? p.ctx.signal;
  const onWait = (pid: number) =>
    debug(p.ctx, `blob ${d.digest.slice(7, 19)}: waiting for img2vm process ${pid}, which is fetching it`);
  await p.cache
    .fetch(d.digest, d.size, p.ctx.scope, { signal: sig, onWait }, (w) =>
      c.downloadBlob(repo, d.digest, w, onProgress, sig),
    )
    .catch((e) => {
      throw sig.aborted ? sig.reason : cacheError(p.cache.root, e, d.size);
    });
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

/** Logs one layer's download now and then, and adds what it gained to the pull's overall count. */
function progressReporter(ctx: RunContext, l: Descriptor, add: (delta: number) => void): (n: number) => void {
  let last = 0;
  let seen = 0;
  const short = l.digest.slice(7, 19);
  debug(ctx, `layer ${short}: downloading ${mb(l.size)}`);
  return (n) => {
    // A resumed or retried download may report from an earlier offset again: only growth counts.
    if (n > seen) {
      add(n - seen);
      seen = n;
    }
    const now = performance.now();
    if (n < l.size && now - last < 1000) return;
    last = now;
    debug(ctx, `layer ${short}: ${mb(n)} of ${mb(l.size)}${n >= l.size ? ', verifying' : ''}`);
  };
}

/** Runs fn over items, limit at a time; the first failure cancels the others and is thrown. */
export async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  parent: AbortSignal | undefined,
  fn: (item: T, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const ac = new AbortController();
  const signal = parent ? AbortSignal.any([parent, ac.signal]) : ac.signal;
  let next = 0;
  let failure: { e: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item, signal);
      } catch (e) {
        if (!failure) {
          failure = { e };
          ac.abort(e);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw parent?.aborted ? parent.reason : failure.e;
}

export { RegistryError };
