// sha512Crypt against the openssl passwd -6 tool: salts of every length, rounds around the limits, the spec vector.
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRandom } from '../../src/core/random.js';
import { makeSalt, sha512Crypt } from '../../src/guest/credentials.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Hash each password with `openssl passwd -6` in one process; passwords must not contain newlines. */
function opensslCrypt(saltArg: string, passwords: string[]): string[] {
  const out = execFileSync('openssl', ['passwd', '-6', '-salt', saltArg, '-stdin'], {
    input: passwords.map((p) => `${p}\n`).join(''),
    encoding: 'utf8',
  });
  return out.trimEnd().split('\n');
}

describe('sha512Crypt: agrees with openssl passwd -6', () => {
  beforeAll(() => {
    if (!hasOpenssl()) throw new Error('openssl is missing: install openssl (scripts/install-deps.sh)');
  });
  const random = createRandom('credentials-openssl-vectors');
  // Lengths straddle the 64-byte SHA-512 block and exercise the length-bit loop.
  const lengths = [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255];
  const passwords = [
    'root',
    'correct horse battery staple',
    'ünïcödé pässwörd ✓ 🔑',
    '-leading-dash',
    ...lengths.map((n) => random.bytes(n).toString('base64').slice(0, n)),
  ];

  it.each([1, 2, 8, 15, 16, 17, 30])('salts of length %i, default rounds', (saltLength) => {
    const salt = makeSalt(createRandom(`salt-${saltLength}`))
      .padEnd(30, 'x')
      .slice(0, saltLength);
    const expected = opensslCrypt(salt, passwords);
    expect(expected).toHaveLength(passwords.length);
    passwords.forEach((pw, i) => expect(sha512Crypt(pw, salt)).toBe(expected[i]));
  });

  it.each([1000, 1001, 4999, 5001, 12345])('rounds=%i', (rounds) => {
    const salt = makeSalt(createRandom(`rounds-${rounds}`));
    const subset = passwords.slice(0, 6);
    const expected = opensslCrypt(`rounds=${rounds}$${salt}`, subset);
    subset.forEach((pw, i) => expect(sha512Crypt(pw, salt, rounds)).toBe(expected[i]));
  });

  it('the spec vector', () => {
    expect(opensslCrypt('saltstring', ['Hello world!'])[0]).toBe(sha512Crypt('Hello world!', 'saltstring'));
  });
});
