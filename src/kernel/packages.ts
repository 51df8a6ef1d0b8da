// Streams a Packages index and keeps only the stanzas wanted, so a 60 MB index never sits in memory whole.
import { isValidDebVersion, type Relation } from './debversion.js';
import { Deb822Error, parseParagraph, type Paragraph } from './deb822.js';

export class PackagesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PackagesError';
  }
}

export interface Dependency {
  name: string;
  relation?: Relation;
  version?: string;
}

/** One Depends clause: alternatives separated by "|". */
export type DependsClause = Dependency[];

export interface PackageStanza {
  package: string;
  version: string;
  architecture: string;
  /** Path below the archive root (pool/...). */
  filename: string;
  size: number;
  sha256: string;
  depends: DependsClause[];
  source?: string;
}

/** A stanza longer than this is hostile (the longest in Debian's index is a few KiB). */
const MAX_STANZA = 1 << 20;
/** More wanted stanzas than this means the filter is wrong or the index hostile. */
const MAX_KEPT = 10_000;

export interface ScanStats {
  bytes: number;
  stanzas: number;
}

/** Reads stanzas from decompressed chunks; returns the valid ones whose Package want() accepts. */
export async function scanPackages(
  chunks: AsyncIterable<Buffer>,
  want: (name: string) => boolean,
  stats?: ScanStats,
): Promise<PackageStanza[]> {
  const kept: PackageStanza[] = [];
  let pending: Buffer = Buffer.alloc(0);
  const take = (s: Buffer): void => {
    if (stats) stats.stanzas++;
    const name = quickName(s);
    if (name !== undefined && !want(name)) return;
    let p: Paragraph;
    try {
      p = parseParagraph(s.toString('utf8'));
    } catch (e) {
      throw new PackagesError((e as Deb822Error).message);
    }
    const pkg = p.get('package');
    if (pkg === undefined) throw new PackagesError('a stanza has no Package field');
    if (!want(pkg)) return;
    kept.push(toStanza(p));
    if (kept.length > MAX_KEPT) throw new PackagesError(`more than ${MAX_KEPT} matching stanzas`);
  };
  for await (const c of chunks) {
    if (stats) stats.bytes += c.length;
    const buf = pending.length ? Buffer.concat([pending, c]) : c;
    let pos = 0;
    for (;;) {
      while (pos < buf.length && buf[pos] === 0x0a) pos++;
      const end = buf.indexOf('\n\n', pos, 'latin1');
      if (end < 0) break;
      take(buf.subarray(pos, end));
      pos = end + 2;
    }
    pending = Buffer.from(buf.subarray(pos));
    if (pending.length > MAX_STANZA) throw new PackagesError(`a stanza is longer than ${MAX_STANZA} bytes`);
  }
  if (pending.some((b) => b !== 0x0a && b !== 0x20 && b !== 0x09)) take(pending);
  return kept;
}

/** The name of a stanza that starts with its Package field (all of Debian's do), without parsing the rest. */
function quickName(s: Buffer): string | undefined {
  if (s.length < 9 || s.toString('latin1', 0, 9) !== 'Package: ') return undefined;
  const nl = s.indexOf(0x0a);
  return s.toString('latin1', 9, nl < 0 ? s.length : nl).trim();
}

export function toStanza(p: Paragraph): PackageStanza {
  const get = (k: string): string => {
    const v = p.get(k);
    if (v === undefined || v === '') throw new PackagesError(`stanza ${p.get('package') ?? '?'} has no ${k} field`);
    return v;
  };
  const pkg = get('package');
  if (!/^[a-z0-9][a-z0-9+.-]+$/.test(pkg)) throw new PackagesError(`invalid package name "${pkg.slice(0, 80)}"`);
  const version = get('version');
  if (!isValidDebVersion(version))
    throw new PackagesError(`package ${pkg} has an invalid version "${version.slice(0, 80)}"`);
  const filename = get('filename');
  if (
    !/^[A-Za-z0-9][A-Za-z0-9._+~%/-]*\.deb$/.test(filename) ||
    filename.split('/').some((c) => c === '..' || c === '.' || c === '')
  ) {
    throw new PackagesError(`package ${pkg} has an unsafe Filename "${filename.slice(0, 120)}"`);
  }
  const size = get('size');
  if (!/^[0-9]{1,15}$/.test(size)) throw new PackagesError(`package ${pkg} has an invalid Size "${size.slice(0, 40)}"`);
  const sha256 = get('sha256');
  if (!/^[0-9a-f]{64}$/.test(sha256))
    throw new PackagesError(`package ${pkg} has an invalid SHA256 "${sha256.slice(0, 80)}"`);
  return {
    package: pkg,
    version,
    architecture: get('architecture'),
    filename,
    size: Number(size),
    sha256,
    depends: parseDepends(p.get('depends') ?? ''),
    source: p.get('source'),
  };
}

/** "a (>= 1), b | c:any (= 2) [amd64] <!nocheck>" → clauses of alternatives; architecture and profile qualifiers are dropped. */
export function parseDepends(field: string): DependsClause[] {
  const out: DependsClause[] = [];
  for (const clause of field.split(',')) {
    if (clause.trim() === '') continue;
    const alts: DependsClause = [];
    for (const alt of clause.split('|')) {
      const a = alt.replace(/\s+/g, ' ').trim();
      const m =
        /^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^\s)]+)\s*\))?\s*(?:\[[^\]]*\])?\s*(?:<[^>]*>\s*)*$/.exec(
          a,
        );
      if (!m) throw new PackagesError(`malformed dependency "${a.slice(0, 80)}"`);
      const d: Dependency = { name: m[1]! };
      if (m[2]) {
        // "<" and ">" are obsolete spellings of "<=" and ">=".
        d.relation = (m[2] === '<' ? '<=' : m[2] === '>' ? '>=' : m[2]) as Relation;
        d.version = m[3]!;
      }
      alts.push(d);
    }
    out.push(alts);
  }
  return out;
}
