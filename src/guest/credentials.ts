// Guest login credentials: SHA-512 crypt ($6$) password hashes and the root entry of /etc/shadow.
import { createHash, type Hash } from 'node:crypto';
import { Img2vmError } from '../core/errors.js';
import type { Random } from '../core/random.js';

/** The 64 characters crypt(3) uses for salts and for its own base64 encoding, in value order. */
const CRYPT_ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const ROUNDS_DEFAULT = 5000;
const ROUNDS_MIN = 1000;
const ROUNDS_MAX = 999_999_999;
const SALT_MAX = 16;
const SECONDS_PER_DAY = 86_400;

/** Add `source` repeated cyclically until exactly `length` bytes have been added. */
function updateCyclic(hash: Hash, source: Buffer, length: number): void {
  let left = length;
  while (left >= source.length) {
    hash.update(source);
    left -= source.length;
  }
  if (left > 0) hash.update(source.subarray(0, left));
}

/** A buffer of `length` bytes made of `source` repeated (steps 16 and 20 of the spec). */
function repeatTo(source: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += source.length) source.copy(out, i, 0, Math.min(source.length, length - i));
  return out;
}

/**
 * The crypt base64 of a 64-byte SHA-512 digest. Bytes are taken in groups of three
 * (b2, b1, b0), combined little-end-first into 24 bits and emitted 6 bits at a time from the
 * low end. The spec's groups are k, k+21, k+42 for k = 0..20, rotated by k mod 3; the last
 * byte (63) is emitted alone as two characters.
 */
function encodeSha512Digest(digest: Buffer): string {
  let out = '';
  const emit = (b2: number, b1: number, b0: number, chars: number): void => {
    let w = (b2 << 16) | (b1 << 8) | b0;
    for (let i = 0; i < chars; i++) {
      out += CRYPT_ALPHABET[w & 0x3f];
      w >>>= 6;
    }
  };
  const at = (i: number): number => digest[i]!;
  for (let k = 0; k < 21; k++) {
    const a = at(k);
    const b = at(k + 21);
    const c = at(k + 42);
    if (k % 3 === 0) emit(a, b, c, 4);
    else if (k % 3 === 1) emit(b, c, a, 4);
    else emit(c, a, b, 4);
  }
  emit(0, 0, at(63), 2);
  return out;
}

function sha512(...parts: Buffer[]): Buffer {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * glibc-compatible SHA-512 crypt ("$6$"), per Drepper's "Unix crypt using SHA-256 and SHA-512".
 * `salt` is the bare salt (no "$6$" prefix); only its first 16 characters are used and they
 * must come from [./0-9A-Za-z]. `rounds` is clamped to 1000..999999999 as the spec requires;
 * the result carries "rounds=N$" only when rounds is given and differs from the default 5000
 * (glibc would also print an explicit rounds=5000; both forms verify identically).
 */
export function sha512Crypt(password: string, salt: string, rounds?: number): string {
  if (rounds !== undefined && !Number.isSafeInteger(rounds)) {
    throw new Img2vmError('usage', `invalid SHA-512 crypt rounds: ${rounds}`, 'rounds must be a whole number');
  }
  const saltText = salt.slice(0, SALT_MAX);
  for (const ch of saltText) {
    if (!CRYPT_ALPHABET.includes(ch)) {
      throw new Img2vmError(
        'usage',
        `invalid character ${JSON.stringify(ch)} in password salt`,
        'salts may only use the characters ./0-9A-Za-z',
      );
    }
  }
  const effectiveRounds = rounds === undefined ? ROUNDS_DEFAULT : Math.min(ROUNDS_MAX, Math.max(ROUNDS_MIN, rounds));

  const key = Buffer.from(password, 'utf8');
  const saltBytes = Buffer.from(saltText, 'latin1');

  // Digest B: password, salt, password.
  const altResult = sha512(key, saltBytes, key);

  // Digest A: password, salt, then B for the length of the password, then the length's bits.
  const ctxA = createHash('sha512');
  ctxA.update(key);
  ctxA.update(saltBytes);
  updateCyclic(ctxA, altResult, key.length);
  for (let n = key.length; n > 0; n >>>= 1) ctxA.update(n & 1 ? altResult : key);
  let current = ctxA.digest();

  // Digest DP: the password once per byte of the password; P is DP stretched to the password length.
  const ctxDP = createHash('sha512');
  for (let i = 0; i < key.length; i++) ctxDP.update(key);
  const pBytes = repeatTo(ctxDP.digest(), key.length);

  // Digest DS: the salt 16 + A[0] times; S is DS stretched to the salt length.
  const ctxDS = createHash('sha512');
  const saltRepeats = 16 + current[0]!;
  for (let i = 0; i < saltRepeats; i++) ctxDS.update(saltBytes);
  const sBytes = repeatTo(ctxDS.digest(), saltBytes.length);

  for (let i = 0; i < effectiveRounds; i++) {
    const ctxC = createHash('sha512');
    ctxC.update(i & 1 ? pBytes : current);
    if (i % 3 !== 0) ctxC.update(sBytes);
    if (i % 7 !== 0) ctxC.update(pBytes);
    ctxC.update(i & 1 ? current : pBytes);
    current = ctxC.digest();
  }

  const roundsPart = rounds !== undefined && effectiveRounds !== ROUNDS_DEFAULT ? `rounds=${effectiveRounds}$` : '';
  return `$6$${roundsPart}${saltText}$${encodeSha512Digest(current)}`;
}

/** A fresh 16-character salt from the crypt alphabet; 64 symbols, so `byte & 63` is unbiased. */
export function makeSalt(random: Random): string {
  const bytes = random.bytes(SALT_MAX);
  let out = '';
  for (const b of bytes) out += CRYPT_ALPHABET[b & 0x3f];
  return out;
}

/** Days since 1970-01-01 UTC, the unit of /etc/shadow's "last password change" field. */
export function passwordChangeDays(epochSeconds: number): number {
  if (!Number.isFinite(epochSeconds) || epochSeconds < 0) {
    throw new Img2vmError('usage', `invalid timestamp: ${epochSeconds}`, 'expected seconds since the Unix epoch');
  }
  return Math.floor(epochSeconds / SECONDS_PER_DAY);
}

/**
 * /etc/shadow content with root's password set to `hash` (null → "*", no password login) and its
 * last-change field set to `epochDays`. Every other line, and the presence or absence of a final
 * newline, is kept byte for byte. When there is no root entry one is added as the first line.
 */
export function setRootPassword(shadowText: string, hash: string | null, epochDays: number): string {
  const password = hash ?? '*';
  if (password === '' || /[:\n\r]/.test(password)) {
    throw new Img2vmError(
      'internal',
      'refusing to write an empty password hash or one containing ":" or a line break to /etc/shadow',
    );
  }
  if (!Number.isSafeInteger(epochDays) || epochDays < 0) {
    throw new Img2vmError('internal', `invalid shadow last-change day count: ${epochDays}`);
  }

  const lines = shadowText.split('\n');
  const rootIndex = lines.findIndex((line) => line.startsWith('root:'));
  if (rootIndex === -1) {
    const entry = `root:${password}:${epochDays}:0:99999:7:::`;
    return shadowText === '' ? `${entry}\n` : `${entry}\n${shadowText}`;
  }

  const fields = lines[rootIndex]!.split(':');
  fields[1] = password;
  fields[2] = String(epochDays);
  lines[rootIndex] = fields.join(':');
  return lines.join('\n');
}
