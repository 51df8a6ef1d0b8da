// The one escape for text from outside (layer names, registry and daemon errors, guest lines) on its way to a terminal: none of it can act as a control sequence.

/**
 * What a terminal or a text view acts on instead of showing: C0 controls but tab and newline (ESC starts every
 * sequence; BEL ends an OSC; CR and BS overwrite what was shown), DEL, the C1 controls U+0080-U+009F (U+009B is
 * CSI, U+009D OSC, to terminals that take them in UTF-8), the bidirectional overrides and isolates and the line and
 * paragraph separators (they make a name read differently from its bytes), and lone UTF-16 surrogates (no
 * terminal byte sequence stands for them).
 */
const UNSAFE =
  /[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The same in JSON text, where JSON.stringify has already escaped C0 and lone surrogates but leaves DEL and C1 raw. */
const UNSAFE_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

function escape(ch: string, newlines: boolean): string {
  if (ch === '\n') return newlines ? '\n' : '\\n';
  if (ch === '\r') return '\\r';
  const c = ch.charCodeAt(0);
  return c <= 0xff ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`;
}

/**
 * UTF-8 bytes as text; each byte that is not part of a well-formed sequence (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF) becomes \xNN, so a name that is not UTF-8 shows its bytes.
 */
function decodeUtf8(b: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const lead = b[i]!;
    if (lead < 0x80) {
      out += String.fromCharCode(lead);
      i++;
      continue;
    }
    const n =
      lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    let cp = n === 1 ? lead & 0x1f : n === 2 ? lead & 0x0f : lead & 0x07;
    let ok = n > 0;
    for (let k = 1; ok && k <= n; k++) {
      const c = b[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (c & 0x3f);
    }
    const min = n === 1 ? 0x80 : n === 2 ? 0x800 : 0x10000;
    if (ok && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff)) {
      out += String.fromCodePoint(cp);
      i += n + 1;
    } else {
      out += `\\x${hex(lead, 2)}`;
      i++;
    }
  }
  return out;
}

/**
 * text with every unsafe character shown as an escape: \xNN up to U+00FF (\r for CR), \uNNNN above; a byte
 * string that is not UTF-8 shows its stray bytes as \xNN. Newlines are kept unless newlines is false (for what
 * must stay on one line, such as a progress title). A backslash is left as it is, so escaping twice changes
 * nothing; that "\x1b" can then be four characters of a name or an escaped ESC only matters to the eye.
 */
export function printable(text: string | Uint8Array, opts: { newlines?: boolean } = {}): string {
  const s = typeof text === 'string' ? text : decodeUtf8(text);
  const newlines = opts.newlines ?? true;
  return s.replace(UNSAFE, (ch) => escape(ch, newlines));
}

/**
 * JSON.stringify (indented by space, or on one line with null) whose text is also safe on a terminal: the
 * characters it leaves raw are written as \uNNNN, which JSON reads back unchanged.
 */
export function printableJson(value: unknown, space: number | null = 2): string {
  const json = JSON.stringify(value, null, space ?? undefined) as string | undefined;
  return (json ?? 'null').replace(UNSAFE_IN_JSON, (ch) => `\\u${hex(ch.charCodeAt(0), 4)}`);
}
