// A suite's Release file: its identity, dates and the SHA-256 of every index; the checks apt makes before trusting it.
import { Deb822Error, parseArchiveDate, parseParagraph } from './deb822.js';

export class ReleaseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReleaseError';
  }
}

export interface IndexEntry {
  sha256: string;
  size: number;
}

export interface Release {
  origin?: string;
  label?: string;
  suite?: string;
  codename?: string;
  date: Date;
  validUntil?: Date;
  /** Indexes may be fetched by their hash (by-hash/SHA256/<hex>), immune to a mirror updating mid-fetch. */
  acquireByHash: boolean;
  architectures: string[];
  components: string[];
  /** Path relative to dists/<suite>/ → SHA-256 and size. */
  sha256: Map<string, IndexEntry>;
}

export function parseRelease(text: string): Release {
  let f;
  try {
    f = parseParagraph(text);
  } catch (e) {
    throw new ReleaseError((e as Deb822Error).message);
  }
  const dateField = f.get('date');
  if (dateField === undefined) throw new ReleaseError('it has no Date field');
  const date = parseArchiveDate(dateField);
  if (!date) throw new ReleaseError(`its Date "${dateField.slice(0, 60)}" is not a date`);
  const vu = f.get('valid-until');
  const validUntil = vu === undefined ? undefined : parseArchiveDate(vu);
  if (vu !== undefined && !validUntil) throw new ReleaseError(`its Valid-Until "${vu.slice(0, 60)}" is not a date`);
  const list = f.get('sha256');
  if (list === undefined) throw new ReleaseError('it has no SHA256 list (MD5 and SHA1 are not trusted)');
  const sha256 = new Map<string, IndexEntry>();
  for (const line of list.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^\s*([0-9a-f]{64})\s+([0-9]{1,15})\s+(\S+)\s*$/.exec(line);
    if (!m) throw new ReleaseError(`malformed SHA256 line "${line.slice(0, 100)}"`);
    const path = m[3]!;
    if (path.startsWith('/') || path.split('/').some((c) => c === '..' || c === '.' || c === ''))
      throw new ReleaseError(`SHA256 list names an unsafe path "${path.slice(0, 100)}"`);
    if (sha256.has(path)) throw new ReleaseError(`SHA256 list names "${path}" twice`);
    sha256.set(path, { sha256: m[1]!, size: Number(m[2]) });
  }
  const words = (k: string): string[] => (f.get(k) ?? '').split(/\s+/).filter(Boolean);
  return {
    origin: f.get('origin'),
    label: f.get('label'),
    suite: f.get('suite'),
    codename: f.get('codename'),
    date,
    validUntil,
    acquireByHash: (f.get('acquire-by-hash') ?? '').toLowerCase() === 'yes',
    architectures: words('architectures'),
    components: words('components'),
    sha256,
  };
}

export interface ReleaseCheck {
  /** The suite that was asked for (a codename such as trixie-security, or an alias such as stable). */
  suite: string;
  now: Date;
  /** Accept a Release whose Valid-Until has passed (apt's Check-Valid-Until=false). */
  allowExpired?: boolean;
  /** How far in the future Date may lie before the clock or the mirror is considered wrong (apt: 10 days). */
  maxFutureMs?: number;
}

const DAY = 24 * 3600_000;

/**
 * The reasons not to trust a correctly signed Release: it is another suite (a replay of a signed
 * file from elsewhere), it has expired (a mirror frozen in time, hiding updates), or it is dated
 * in the future (a wrong clock makes the expiry check meaningless).
 */
export function checkRelease(r: Release, c: ReleaseCheck): void {
  if (r.codename !== c.suite && r.suite !== c.suite) {
    throw new ReleaseError(`it is for suite ${r.codename ?? r.suite ?? '(none)'}, not ${c.suite}`);
  }
  const future = r.date.getTime() - c.now.getTime();
  if (future > (c.maxFutureMs ?? 10 * DAY)) {
    throw new ReleaseError(
      `it is dated ${r.date.toISOString()}, ${Math.round(future / DAY)} days in the future (is the clock right?)`,
    );
  }
  if (r.validUntil && r.validUntil.getTime() < r.date.getTime()) {
    throw new ReleaseError(`its Valid-Until ${r.validUntil.toISOString()} is before its Date ${r.date.toISOString()}`);
  }
  if (r.validUntil && !c.allowExpired && r.validUntil.getTime() < c.now.getTime()) {
    throw new ReleaseError(
      `it expired on ${r.validUntil.toISOString()} (Valid-Until); the mirror is out of date or frozen`,
    );
  }
}
