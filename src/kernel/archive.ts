// Finds the newest Debian cloud kernel package across a suite, its -updates and its -security suite, trusting only signed, hash-checked indexes.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';
import { which } from '../tools/index.js';
import { ClearsignError, splitClearsigned } from './clearsign.js';
import { CodecError, decode } from './codec.js';
import { compareDebVersions, satisfies } from './debversion.js';
import { verifyDetached } from './gpgv.js';
import { getBuffer, HttpError, type HttpOptions } from './http.js';
import { PackagesError, scanPackages, type PackageStanza, type ScanStats } from './packages.js';
import { checkRelease, parseRelease, ReleaseError, type Release } from './release.js';

// https by default: a signature proves an index is Debian's but not that it is current, and over plain http
// anyone on the path can serve an old one. Node checks the certificate against its bundled CA list (plus
// NODE_EXTRA_CA_CERTS); a failure is an error, never a silent retry over http.
export const DEFAULT_MIRROR = 'https://deb.debian.org/debian';
export const DEFAULT_SECURITY_MIRROR = 'https://deb.debian.org/debian-security';

/** Suites Debian gives no security support and no -updates, so there is nothing to ask for beside them. */
const DEVELOPMENT_SUITES = new Set(['sid', 'unstable', 'experimental', 'rc-buggy']);

/** The archive could not be reached at all: the caller may fall back to a cached kernel. */
export class ArchiveUnreachableError extends Img2vmError {
  constructor(
    message: string,
    hint: string,
    cause?: unknown,
    /** The archive root that did not answer. */
    readonly base?: string,
  ) {
    super('imageNotFound', message, hint, { cause });
    this.name = 'ArchiveUnreachableError';
  }
}

export interface SuiteSource {
  /** Archive root: the URL below which dists/ and pool/ are. */
  base: string;
  suite: string;
  role: 'base' | 'updates' | 'security' | 'backports';
  /** Every suite but -updates must answer: a missing security suite would silently mean a kernel without its fixes. */
  required: boolean;
}

/**
 * trixie → trixie, trixie-updates, trixie-security; bookworm-backports adds itself to bookworm's three;
 * sid is alone. security null: the user opted out of the security suite (--kernel-no-security).
 */
export function suiteSources(suite: string, mirror: string, security: string | null): SuiteSource[] {
  const backports = suite.endsWith('-backports');
  const base = backports ? suite.slice(0, -'-backports'.length) : suite;
  const out: SuiteSource[] = [{ base: mirror, suite: base, role: 'base', required: true }];
  if (DEVELOPMENT_SUITES.has(base)) return out;
  out.push({ base: mirror, suite: `${base}-updates`, role: 'updates', required: false });
  if (security) out.push({ base: security, suite: `${base}-security`, role: 'security', required: true });
  if (backports) out.push({ base: mirror, suite, role: 'backports', required: true });
  return out;
}

/** Whether a suite has a security suite beside it that --kernel-no-security leaves out. */
export function hasSecuritySuite(suite: string): boolean {
  return !DEVELOPMENT_SUITES.has(suite.replace(/-backports$/, ''));
}

/** The security archive beside a user's mirror: a sibling "-security" path (as deb.debian.org and apt proxies lay it out). */
export function defaultSecurityMirror(mirror: string): string {
  const m = mirror.replace(/\/+$/, '');
  if (m === DEFAULT_MIRROR) return DEFAULT_SECURITY_MIRROR;
  return /\/debian$/.test(m) ? `${m}-security` : DEFAULT_SECURITY_MIRROR;
}

export interface ArchiveOptions {
  mirror: string;
  securityMirror: string | null;
  suite: string;
  arch: string;
  keyring: string;
  now: Date;
  allowExpired: boolean;
  http: HttpOptions;
  /** A private directory for gpgv's files. */
  work: string;
  warn: (message: string) => void;
  debug: (message: string) => void;
  /** Which packages of the index to keep (default the linux-image-* ones a kernel fetch reads). */
  wants?: (name: string) => boolean;
}

export interface SuiteIndex {
  source: SuiteSource;
  release: Release;
  stanzas: PackageStanza[];
  stats: {
    inRelease: number;
    packages: number;
    packagesPath: string;
    uncompressed: number;
    stanzas: number;
    ms: number;
  };
}

export interface ResolvedKernel {
  /** linux-image-cloud-<arch>: the package that says which kernel is current. */
  meta: PackageStanza;
  /** The package with the kernel itself, and the suite it is taken from. */
  image: PackageStanza;
  from: SuiteSource;
  url: string;
  suites: SuiteIndex[];
}

const MAX_INRELEASE = 16 << 20;
const MAX_PACKAGES_UNCOMPRESSED = 1 << 30;

function url(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path}`;
}

function badIndex(what: string, why: string): Img2vmError {
  return new Img2vmError(
    'badImage',
    `${what}: ${why}`,
    'the mirror, a proxy or the network altered or replaced the file; try again or another --kernel-mirror (nothing was cached)',
  );
}

async function fetchSuite(src: SuiteSource, o: ArchiveOptions): Promise<SuiteIndex> {
  const t0 = performance.now();
  const inReleaseUrl = url(src.base, `dists/${src.suite}/InRelease`);
  const raw = await getBuffer(inReleaseUrl, MAX_INRELEASE, o.http);
  let signed;
  try {
    signed = splitClearsigned(raw);
  } catch (e) {
    if (e instanceof ClearsignError) throw badIndex(inReleaseUrl, `not a well-formed signed Release (${e.message})`);
    throw e;
  }
  const verdict = await verifyDetached(signed.text, signed.signature, o.keyring, o.work, o.http.signal);
  if (!verdict.ok)
    throw badIndex(inReleaseUrl, `the signature is not valid: ${verdict.reason ?? 'rejected'} (keyring ${o.keyring})`);
  let release: Release;
  try {
    release = parseRelease(signed.text.toString('utf8'));
    checkRelease(release, { suite: src.suite, now: o.now, allowExpired: o.allowExpired });
  } catch (e) {
    if (!(e instanceof ReleaseError)) throw e;
    if (/expired/.test(e.message)) {
      throw new Img2vmError(
        'badImage',
        `${inReleaseUrl}: ${e.message}`,
        'use an up-to-date --kernel-mirror; to accept an expired archive anyway (e.g. a snapshot), set allowExpired',
      );
    }
    throw badIndex(inReleaseUrl, e.message);
  }
  o.debug(`${src.suite}: Release of ${release.date.toISOString()} signed by ${verdict.signers.join(', ')}`);

  const dir = `main/binary-${o.arch}`;
  const candidates = [...(which('xz') ? [`${dir}/Packages.xz`] : []), `${dir}/Packages.gz`, `${dir}/Packages`];
  const packagesPath = candidates.find((p) => release.sha256.has(p));
  if (!packagesPath) throw badIndex(inReleaseUrl, `it lists no ${dir}/Packages index`);
  const entry = release.sha256.get(packagesPath)!;
  const plain = release.sha256.get(`${dir}/Packages`);
  let body: Buffer;
  const canonical = url(src.base, `dists/${src.suite}/${packagesPath}`);
  const byHash = url(src.base, `dists/${src.suite}/${dir}/by-hash/SHA256/${entry.sha256}`);
  try {
    body = await getBuffer(release.acquireByHash ? byHash : canonical, entry.size, o.http);
  } catch (e) {
    if (!(e instanceof HttpError && e.reason === 'notFound' && release.acquireByHash)) throw e;
    body = await getBuffer(canonical, entry.size, o.http);
  }
  // Size and hash before a single byte is parsed or decompressed.
  const got = createHash('sha256').update(body).digest('hex');
  if (body.length !== entry.size || got !== entry.sha256) {
    throw badIndex(
      canonical,
      `it has ${body.length} bytes with SHA-256 ${got}, but the signed Release says ${entry.size} bytes with SHA-256 ${entry.sha256}`,
    );
  }
  const stats: ScanStats = { bytes: 0, stanzas: 0 };
  const plainHash = createHash('sha256');
  const hashed = async function* (chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const c of chunks) {
      plainHash.update(c);
      yield c;
    }
  };
  let stanzas: PackageStanza[];
  try {
    const { chunks } = decode(body.subarray(0, 512), Readable.from([body]), {
      signal: o.http.signal,
      maxBytes: plain?.size ?? MAX_PACKAGES_UNCOMPRESSED,
      what: canonical,
    });
    stanzas = await scanPackages(hashed(chunks), o.wants ?? ((n) => n.startsWith('linux-image-')), stats);
  } catch (e) {
    if (e instanceof PackagesError || e instanceof CodecError) throw badIndex(canonical, e.message);
    throw e;
  }
  if (plain && (stats.bytes !== plain.size || plainHash.digest('hex') !== plain.sha256)) {
    throw badIndex(
      canonical,
      `it decompresses to ${stats.bytes} bytes that do not match the signed Release's entry for ${dir}/Packages`,
    );
  }
  const st = {
    inRelease: raw.length,
    packages: body.length,
    packagesPath,
    uncompressed: stats.bytes,
    stanzas: stats.stanzas,
    ms: Math.round(performance.now() - t0),
  };
  o.debug(
    `${src.suite}: InRelease ${st.inRelease} B, ${packagesPath} ${st.packages} B → ${st.uncompressed} B, ${st.stanzas} stanzas, in ${st.ms} ms`,
  );
  return { source: src, release, stanzas, stats: st };
}

function unreachableHint(o: ArchiveOptions): string {
  // Node's http client does not read these, and neither does img2vm: say so rather than let the user wonder.
  const proxy = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY'].find((v) => process.env[v]);
  const viaProxy = proxy
    ? `; img2vm does not use ${proxy} for the kernel: give an apt proxy as the mirror instead (e.g. --kernel-mirror http://PROXY:3142/deb.debian.org/debian)`
    : '';
  return `check the network, or point --kernel-mirror at a reachable Debian mirror or apt proxy (now ${o.mirror}); or pass --kernel with a local kernel${viaProxy}`;
}

/** A certificate Node could not verify: an intercepting proxy, a wrong clock, or an attacker; never retried over http. */
export function tlsHint(host: string): string {
  return (
    `${host}'s certificate is not signed by a CA Node.js trusts, or the clock is wrong: if a proxy or firewall intercepts TLS, ` +
    "add its CA with NODE_EXTRA_CA_CERTS=FILE (the host's store is /etc/ssl/certs/ca-certificates.crt on Debian); " +
    'or give a plain-http mirror or apt proxy with --kernel-mirror http://… (the signatures are still checked, but an old index can then be replayed to a cache that has seen none)'
  );
}

const securityOptOut = 'to go without security updates (not advised), pass --kernel-no-security';

/** Fetches every suite; all but -updates must answer (a missing -updates is skipped, an unreachable one warned about). */
export async function fetchSuites(o: ArchiveOptions): Promise<SuiteIndex[]> {
  const sources = suiteSources(o.suite, o.mirror, o.securityMirror);
  if (!o.securityMirror && hasSecuritySuite(o.suite)) {
    o.warn(
      `fetching without ${o.suite.replace(/-backports$/, '')}-security (--kernel-no-security): the kernel may lack security fixes`,
    );
  }
  const results = await Promise.allSettled(sources.map((s) => fetchSuite(s, o)));
  const out: SuiteIndex[] = [];
  results.forEach((r, i) => {
    const src = sources[i]!;
    if (r.status === 'fulfilled') return void out.push(r.value);
    const e = r.reason as unknown;
    if (e instanceof HttpError) {
      if (e.reason === 'notFound') {
        if (src.role === 'security') {
          throw new Img2vmError(
            'imageNotFound',
            `${src.suite} is not in the security archive at ${src.base} (${e.message}), and without it the kernel would lack its security fixes`,
            `give a mirror that carries it: img2vm looks beside --kernel-mirror (…/debian → …/debian-security), else at ${DEFAULT_SECURITY_MIRROR}; ${securityOptOut}`,
          );
        }
        if (src.required)
          throw new Img2vmError(
            'imageNotFound',
            `suite ${src.suite} is not in the Debian archive at ${src.base} (${e.message})`,
            'check the suite name (e.g. trixie, bookworm) and the --kernel-mirror',
          );
        return void o.debug(`${src.suite}: not in ${src.base}; skipped`);
      }
      if (e.reason === 'unreachable' || e.reason === 'tls') {
        if (src.required) {
          const what = src.role === 'security' ? `the security suite ${src.suite}` : `the kernel index of ${src.suite}`;
          const hint = e.reason === 'tls' ? tlsHint(new URL(e.url).host) : unreachableHint(o);
          throw new ArchiveUnreachableError(
            `cannot fetch ${what} from ${src.base}: ${e.message}`,
            src.role === 'security' ? `${hint}; ${securityOptOut}` : hint,
            e,
            src.base,
          );
        }
        return void o.warn(
          `${src.suite} at ${src.base} is unreachable (${e.message}); continuing without it, so the kernel may lack its newest fixes`,
        );
      }
      throw new Img2vmError(
        'badImage',
        `${src.suite} at ${src.base}: ${e.message}`,
        'the mirror or a proxy misbehaves; try another --kernel-mirror',
      );
    }
    throw e;
  });
  return out;
}

/** The newest linux-image-cloud-<arch> over all suites, and the kernel package its Depends names. */
export function selectKernel(suites: SuiteIndex[], arch: string): Omit<ResolvedKernel, 'url'> {
  const metaName = `linux-image-cloud-${arch}`;
  let best: { meta: PackageStanza; s: SuiteIndex } | undefined;
  for (const s of suites) {
    for (const p of s.stanzas) {
      if (p.package !== metaName || p.architecture !== arch) continue;
      if (!best || compareDebVersions(p.version, best.meta.version) > 0) best = { meta: p, s };
    }
  }
  const names = suites.map((s) => s.source.suite).join(', ');
  if (!best)
    throw new Img2vmError(
      'imageNotFound',
      `no ${metaName} package in ${names}`,
      'choose a suite that has Debian cloud kernels (e.g. debian-archive:trixie)',
    );
  const { meta } = best;
  // The current suite first, so the kernel comes from where its metapackage does.
  const ordered = [best.s, ...suites.filter((s) => s !== best!.s)];
  for (const clause of meta.depends) {
    for (const alt of clause) {
      if (!alt.name.startsWith('linux-image-') || alt.name === metaName) continue;
      for (const s of ordered) {
        const hit = s.stanzas
          .filter(
            (p) =>
              p.package === alt.name &&
              p.architecture === arch &&
              (!alt.relation || satisfies(p.version, alt.relation, alt.version!)),
          )
          .sort((a, b) => compareDebVersions(b.version, a.version))[0];
        if (hit) return { meta, image: hit, from: s.source, suites };
      }
    }
  }
  throw new Img2vmError(
    'imageNotFound',
    `${metaName} ${meta.version} depends on no kernel package that is in ${names}`,
    'the mirror may be mid-update; try again later',
  );
}

export async function resolveArchiveKernel(o: ArchiveOptions): Promise<ResolvedKernel> {
  const suites = await fetchSuites(o);
  const sel = selectKernel(suites, o.arch);
  return { ...sel, url: url(sel.from.base, sel.image.filename) };
}
