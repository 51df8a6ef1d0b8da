// Splits an OpenPGP clearsigned file (InRelease) into exactly the text that was signed and its signature, refusing anything else.
//
// gpgv accepts a file with unsigned text around the signed block, or several signed blocks, and
// reports a good signature for one of them; a parser that reads the whole file would then trust
// text nobody signed. So the structure is checked strictly here, and gpgv is later given the
// extracted text and the signature as a detached pair: what it verifies is byte for byte what is parsed.

/** The file is not one well-formed clearsigned message; the caller turns it into a badImage error. */
export class ClearsignError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClearsignError';
  }
}

export interface Clearsigned {
  /**
   * The signed text as RFC 4880 §7.1 defines it: dash-escapes removed, trailing spaces and tabs
   * removed from every line, lines joined with LF, no line break after the last line.
   */
  text: Buffer;
  /** The ASCII-armored signature block, BEGIN and END lines included. */
  signature: Buffer;
  /** The digest names of the Hash: armor headers. */
  hashes: string[];
}

const BEGIN_MESSAGE = '-----BEGIN PGP SIGNED MESSAGE-----';
const BEGIN_SIGNATURE = '-----BEGIN PGP SIGNATURE-----';
const END_SIGNATURE = '-----END PGP SIGNATURE-----';

function trimEnd(line: string): string {
  return line.replace(/[ \t\r]+$/, '');
}

export function splitClearsigned(input: Buffer): Clearsigned {
  if (input.includes(0)) throw new ClearsignError('the file contains NUL bytes');
  // latin1 keeps every byte as one char, so the text handed to gpgv is the bytes that were signed.
  const lines = input.toString('latin1').split('\n');
  let i = 0;
  while (i < lines.length && trimEnd(lines[i]!) === '') i++;
  if (i >= lines.length || trimEnd(lines[i]!) !== BEGIN_MESSAGE) {
    throw new ClearsignError(
      i >= lines.length
        ? 'the file is empty'
        : 'the file does not start with a clearsigned message (text before "-----BEGIN PGP SIGNED MESSAGE-----", or not signed)',
    );
  }
  i++;

  const hashes: string[] = [];
  for (; ; i++) {
    if (i >= lines.length) throw new ClearsignError('the file ends inside the armor headers');
    const h = trimEnd(lines[i]!);
    if (h === '') break;
    const m = /^Hash: ([A-Za-z0-9]+(?:, ?[A-Za-z0-9]+)*)$/.exec(h);
    if (!m) throw new ClearsignError(`unexpected armor header "${h.slice(0, 80)}" (only Hash: is allowed)`);
    hashes.push(...m[1]!.split(',').map((s) => s.trim()));
  }
  i++;

  const text: string[] = [];
  for (; ; i++) {
    if (i >= lines.length) throw new ClearsignError('the file ends before the signature');
    const l = trimEnd(lines[i]!);
    if (l === BEGIN_SIGNATURE) break;
    if (l.startsWith('- ')) text.push(l.slice(2));
    // A signer escapes every line that starts with a dash; an unescaped one is armor (a second
    // message, or a signature boundary) that must not be taken as signed text.
    else if (l.startsWith('-'))
      throw new ClearsignError(`the signed text holds an unescaped armor line "${l.slice(0, 80)}"`);
    else text.push(l);
  }

  const sig: string[] = [BEGIN_SIGNATURE];
  let inHeaders = true;
  for (i++; ; i++) {
    if (i >= lines.length) throw new ClearsignError('the signature block has no END line (truncated file)');
    const l = trimEnd(lines[i]!);
    if (l === END_SIGNATURE) break;
    if (inHeaders && l === '') inHeaders = false;
    else if (inHeaders && /^[A-Za-z][A-Za-z0-9-]*: /.test(l)) {
      /* an armor header such as Version: or Comment: */
    } else if (/^[A-Za-z0-9+/=]+$/.test(l)) inHeaders = false;
    else throw new ClearsignError(`unexpected line in the signature block "${l.slice(0, 80)}"`);
    sig.push(l);
  }
  sig.push(END_SIGNATURE);
  for (i++; i < lines.length; i++) {
    if (trimEnd(lines[i]!) !== '')
      throw new ClearsignError('there is text after the signature (a second message, or unsigned text)');
  }
  return {
    text: Buffer.from(text.join('\n'), 'latin1'),
    signature: Buffer.from(`${sig.join('\n')}\n`, 'latin1'),
    hashes,
  };
}
