// Debian version comparison (dpkg's algorithm: epoch, upstream, revision; ~ sorts before everything) and relation checks.

export interface DebVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** Splits [epoch:]upstream[-revision]; lenient like dpkg's comparison (a hostile string never throws). */
export function parseDebVersion(v: string): DebVersion {
  let s = v.trim();
  let epoch = 0;
  const colon = s.indexOf(':');
  if (colon > 0 && /^[0-9]+$/.test(s.slice(0, colon))) {
    epoch = Math.min(Number(s.slice(0, colon)), Number.MAX_SAFE_INTEGER);
    s = s.slice(colon + 1);
  }
  const dash = s.lastIndexOf('-');
  if (dash < 0) return { epoch, upstream: s, revision: '' };
  return { epoch, upstream: s.slice(0, dash), revision: s.slice(dash + 1) };
}

/** Whether a version string is well-formed as dpkg requires for packages in an index. */
export function isValidDebVersion(v: string): boolean {
  return v.length <= 256 && /^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*$/.test(v) && !v.endsWith('-');
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** The weight dpkg gives a character of a non-digit run: end and digits 0, '~' below everything, letters before other symbols. */
function order(c: number | undefined): number {
  if (c === undefined || isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === 0x7e) return -1;
  return c + 256;
}

/** dpkg's verrevcmp: alternating non-digit runs (by order()) and digit runs (numerically, any length). */
function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const ac = order(i < a.length ? a.charCodeAt(i) : undefined);
      const bc = order(j < b.length ? b.charCodeAt(j) : undefined);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (i < a.length && a.charCodeAt(i) === 0x30) i++;
    while (j < b.length && b.charCodeAt(j) === 0x30) j++;
    let firstDiff = 0;
    while (i < a.length && j < b.length && isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && isDigit(a.charCodeAt(i))) return 1;
    if (j < b.length && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** Negative, zero or positive as a sorts before, equal to or after b. */
export function compareDebVersions(a: string, b: string): number {
  const x = parseDebVersion(a);
  const y = parseDebVersion(b);
  if (x.epoch !== y.epoch) return x.epoch < y.epoch ? -1 : 1;
  const u = compareFragment(x.upstream, y.upstream);
  if (u) return Math.sign(u);
  return Math.sign(compareFragment(x.revision, y.revision));
}

export type Relation = '<<' | '<=' | '=' | '>=' | '>>';

/** Whether version v satisfies "REL want" of a Depends field. */
export function satisfies(v: string, rel: Relation, want: string): boolean {
  const c = compareDebVersions(v, want);
  switch (rel) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}
