// The deb822 control-file syntax shared by Release and Packages: one paragraph of "Field: value" with continuation lines.

export class Deb822Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Deb822Error';
  }
}

/** Field names lower-cased → value (continuation lines joined with "\n", each without its leading space). */
export type Paragraph = Map<string, string>;

export function parseParagraph(text: string): Paragraph {
  const fields: Paragraph = new Map();
  let current: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    if (line.startsWith('#')) continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (current === undefined) throw new Deb822Error('a continuation line comes before any field');
      fields.set(current, `${fields.get(current)!}\n${line.slice(1)}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Deb822Error(`malformed line "${line.slice(0, 80)}"`);
    const name = line.slice(0, colon).toLowerCase();
    if (!/^[!-9;-~]+$/.test(name)) throw new Deb822Error(`malformed field name "${line.slice(0, colon).slice(0, 80)}"`);
    if (fields.has(name)) throw new Deb822Error(`field "${line.slice(0, colon)}" appears twice`);
    fields.set(name, line.slice(colon + 1).trim());
    current = name;
  }
  return fields;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The RFC 2822 dates the Debian archive writes ("Sat, 21 Nov 2026 09:15:44 UTC"); undefined when malformed. */
export function parseArchiveDate(s: string): Date | undefined {
  const m =
    /^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) (UTC|GMT|Z|[+-]\d{4})$/.exec(
      s.trim(),
    );
  if (!m) return undefined;
  const month = MONTHS.indexOf(m[2]!);
  if (month < 0) return undefined;
  const [day, year, hh, mm, ss] = [m[1], m[3], m[4], m[5], m[6]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return undefined;
  let t = Date.UTC(year, month, day, hh, mm, ss);
  const zone = m[7]!;
  if (/^[+-]/.test(zone)) {
    const off = (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5))) * 60_000;
    t -= zone.startsWith('+') ? off : -off;
  }
  return new Date(t);
}
