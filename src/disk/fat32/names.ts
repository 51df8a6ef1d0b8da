// FAT file names: which long names are valid, 8.3 short names (with NT case flags or ~N tails), unique within a directory.

/** NT case flags in byte 12 of a short entry: the base / the extension is shown in lower case. */
export const CASE_LOWER_BASE = 0x08;
export const CASE_LOWER_EXT = 0x10;
/** VFAT stores at most 255 UTF-16 code units of a long name. */
export const MAX_LONG_NAME = 255;

export interface ShortName {
  /** The 11 bytes of the short entry: base padded to 8, extension padded to 3, upper case. */
  bytes: Buffer;
  /** CASE_LOWER_* bits, for names stored as a short name only. */
  caseFlags: number;
  /** Whether the name needs VFAT long-name entries before its short entry. */
  long: boolean;
}

// Characters a short name may hold besides letters and digits. Anything above ASCII would need a code page; img2vm
// does not guess one, so such characters make the name long-only (the short name gets '_').
const SHORT_PUNCT = new Set("!#$%&'()-@^_`{}~");
const LONG_FORBIDDEN = new Set('"*/:<>?\\|');

/** Why `name` cannot be a FAT long name, or undefined when it can. */
export function invalidLongName(name: string): string | undefined {
  if (name === '' || name === '.' || name === '..') return 'it is empty, "." or ".."';
  if (name.length > MAX_LONG_NAME) return `it is longer than ${MAX_LONG_NAME} characters`;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20) return 'it contains a control character';
    if (LONG_FORBIDDEN.has(name[i]!)) return `it contains "${name[i]}" (FAT names cannot contain " * / : < > ? \\ |)`;
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = name.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return 'it is not valid Unicode';
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return 'it is not valid Unicode';
  }
  // Windows and Linux drop trailing dots and spaces, so such a name could not be looked up as written.
  if (/[. ]$/.test(name)) return 'it ends with a dot or a space';
  if (name.startsWith(' ')) return 'it starts with a space';
  return undefined;
}

/** The key two names of one directory collide under: FAT compares names without regard to case. */
export function foldName(name: string): string {
  let out = '';
  for (const ch of name) {
    const up = ch.toUpperCase();
    // Full Unicode case mapping can change lengths (ß → SS); FAT's upcase table maps one unit to one.
    out += up.length === ch.length ? up : ch;
  }
  return out;
}

function isShortChar(ch: string): boolean {
  return /^[A-Za-z0-9]$/.test(ch) || SHORT_PUNCT.has(ch);
}

type Case = 'none' | 'upper' | 'lower' | 'mixed';
function caseOf(s: string): Case {
  const up = /[A-Z]/.test(s);
  const low = /[a-z]/.test(s);
  return up && low ? 'mixed' : up ? 'upper' : low ? 'lower' : 'none';
}

function pad(base: string, ext: string): Buffer {
  return Buffer.from(base.padEnd(8, ' ') + ext.padEnd(3, ' '), 'latin1');
}

/**
 * A name that is already 8.3 and needs no long entries: 1-8 base and 0-3 extension characters of the short-name set,
 * each part in one case. Lower-case parts get the NT case flags (as mtools and Windows NT write them, and Linux and
 * EDK2's FAT driver read them); mixed case needs a long name.
 */
function exactShort(name: string): ShortName | undefined {
  const m = /^([^.]{1,8})(?:\.([^.]{1,3}))?$/.exec(name);
  if (!m) return undefined;
  const base = m[1]!;
  const ext = m[2] ?? '';
  if (![...base, ...ext].every(isShortChar)) return undefined;
  const bc = caseOf(base);
  const ec = caseOf(ext);
  if (bc === 'mixed' || ec === 'mixed') return undefined;
  const caseFlags = (bc === 'lower' ? CASE_LOWER_BASE : 0) | (ec === 'lower' ? CASE_LOWER_EXT : 0);
  return { bytes: pad(base.toUpperCase(), ext.toUpperCase()), caseFlags, long: false };
}

interface Basis {
  base: string;
  ext: string;
  /** Whether characters were dropped, replaced or cut off, so that the short name needs a ~N tail. */
  lossy: boolean;
}

/**
 * The short-name basis of a long name, by the Windows 95 rules Linux vfat and mtools follow: the extension is what
 * follows the last dot (unless only dots and spaces precede it), dots and spaces are dropped, characters outside the
 * short-name set become '_', then base and extension are cut to 8 and 3.
 */
function basis(name: string): Basis {
  const dot = name.lastIndexOf('.');
  const hasExt = dot > 0 && dot < name.length - 1 && /[^. ]/.test(name.slice(0, dot));
  let lossy = false;
  const convert = (part: string, max: number): string => {
    let out = '';
    for (const ch of part) {
      if (ch === '.' || ch === ' ') {
        lossy = true;
        continue;
      }
      if (isShortChar(ch)) out += ch.toUpperCase();
      else {
        out += '_';
        lossy = true;
      }
    }
    if (out.length > max) lossy = true;
    return out.slice(0, max);
  };
  const base = convert(hasExt ? name.slice(0, dot) : name, 8);
  const ext = hasExt ? convert(name.slice(dot + 1), 3) : '';
  return { base, ext, lossy };
}

/** The checksum of a short name that every long-name entry of the same file carries. */
export function shortNameChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + bytes[i]!) & 0xff;
  return sum;
}

/** The largest ~N tail: with it the base keeps a single character. */
const MAX_TAIL = 999999;

/**
 * Short names for the entries of one directory, in the order given. Names must be valid long names, distinct under
 * foldName. Exact 8.3 names keep their own short name; then mixed-case names whose basis lost nothing take it as is;
 * then every other name gets basis~N with the lowest free N (mtools' sequence; Linux draws random digits after ~9,
 * which would make the bytes depend on the clock).
 */
export function assignShortNames(names: readonly string[]): ShortName[] {
  const taken = new Set<string>();
  const out: (ShortName | undefined)[] = names.map((n) => exactShort(n));
  for (const s of out) if (s) taken.add(s.bytes.toString('latin1'));

  const bases = names.map((n) => basis(n));
  names.forEach((_, i) => {
    const b = bases[i]!;
    if (out[i] || b.lossy) return;
    const bytes = pad(b.base, b.ext);
    const key = bytes.toString('latin1');
    if (taken.has(key)) return;
    taken.add(key);
    out[i] = { bytes, caseFlags: 0, long: true };
  });

  names.forEach((name, i) => {
    if (out[i]) return;
    const b = bases[i]!;
    for (let n = 1; n <= MAX_TAIL; n++) {
      const tail = `~${n}`;
      const bytes = pad(b.base.slice(0, 8 - tail.length) + tail, b.ext);
      const key = bytes.toString('latin1');
      if (taken.has(key)) continue;
      taken.add(key);
      out[i] = { bytes, caseFlags: 0, long: true };
      return;
    }
    // Unreachable in practice: a FAT directory holds at most 65536 entries.
    throw new RangeError(`no free short name for ${JSON.stringify(name)}`);
  });
  return out as ShortName[];
}
