// Unit tests for guest credentials: SHA-512 crypt against spec vectors (openssl's in credentials.tools.test.ts), salts, /etc/shadow editing.
import { describe, expect, it } from 'vitest';
import { createRandom } from '../../src/core/random.js';
import { Img2vmError } from '../../src/core/errors.js';
import { makeSalt, passwordChangeDays, setRootPassword, sha512Crypt } from '../../src/guest/credentials.js';

const CRYPT_HASH = /^\$6\$(?:rounds=(\d+)\$)?([./0-9A-Za-z]{0,16})\$([./0-9A-Za-z]{86})$/;

/** Pull salt and rounds back out of a "$6$" string so the hash can be recomputed. */
function parseCrypt(hash: string): { salt: string; rounds: number | undefined; digest: string } {
  const m = CRYPT_HASH.exec(hash);
  if (!m) throw new Error(`not a $6$ hash: ${hash}`);
  return { rounds: m[1] === undefined ? undefined : Number(m[1]), salt: m[2]!, digest: m[3]! };
}

describe('sha512Crypt: test vectors from the SHA-crypt specification', () => {
  // [salt as given, password, rounds, expected]
  const vectors: Array<[string, string, number | undefined, string]> = [
    [
      'saltstring',
      'Hello world!',
      undefined,
      '$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1',
    ],
    [
      'saltstringsaltstring',
      'Hello world!',
      10000,
      '$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.',
    ],
    [
      'anotherlongsaltstring',
      'a very much longer text to encrypt.  This one even stretches over morethan one line.',
      1400,
      '$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1',
    ],
    [
      'short',
      'we have a short salt string but not a short password',
      77777,
      '$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0',
    ],
    [
      'asaltof16chars..',
      'a short string',
      123456,
      '$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1',
    ],
    [
      'roundstoolow',
      'the minimum number is still observed',
      10,
      '$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.',
    ],
  ];

  it.each(vectors)('salt %j, password %j, rounds %j', (salt, password, rounds, expected) => {
    expect(sha512Crypt(password, salt, rounds)).toBe(expected);
  });

  it('spec vector with explicit rounds=5000 (printed by glibc, omitted here; same digest)', () => {
    // Spec: "$6$rounds=5000$toolongsaltstring" / "This is just a test".
    const digest = 'lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0';
    expect(sha512Crypt('This is just a test', 'toolongsaltstring', 5000)).toBe(`$6$toolongsaltstrin$${digest}`);
    expect(sha512Crypt('This is just a test', 'toolongsaltstring')).toBe(`$6$toolongsaltstrin$${digest}`);
  });

  it('the vector quoted in the task brief is not the spec value (it differs after "svn8UoSVapNt")', () => {
    expect(sha512Crypt('Hello world!', 'saltstring')).not.toBe(
      '$6$saltstring$svn8UoSVapNtRuq4fb0nMq/oS5mK5N1.0Fo/nl9V0yD0Fm5gF4lUmM.9/P7xZMsmJmK8QNb8iQKyTvvhFSVP3.',
    );
  });

  it('empty password and empty salt (values from the host glibc/libxcrypt crypt(3))', () => {
    expect(sha512Crypt('', 'abc')).toBe(
      '$6$abc$mJP3a6FyA8uCnzRtlnNypPwjnvpi5TP9qOrInzrfDmwxUQG38PkpCPdqfTb8JQfAngapMxeim4AZ..hSdRRzD.',
    );
    expect(sha512Crypt('héllo', 'abc')).toBe(
      '$6$abc$cxybk3Kdvz1KX1RM5T70KYO4qqh9kfLMysxXbJna9M29971jGiWj59X5ACACOrEN8whki4M3LDE.sx4GjDigU1',
    );
    expect(sha512Crypt('abc', '')).toMatch(/^\$6\$\$[./0-9A-Za-z]{86}$/);
  });

  it('clamps rounds to the maximum and rejects bad input', () => {
    expect(() => sha512Crypt('x', 'salt', 1.5)).toThrow(Img2vmError);
    expect(() => sha512Crypt('x', 'sa$lt')).toThrow(Img2vmError);
    expect(() => sha512Crypt('x', 'sa:lt')).toThrow(Img2vmError);
    // Characters beyond the 16th are ignored, so they are not validated either.
    expect(sha512Crypt('x', 'abcdefghijklmnop$:!')).toBe(sha512Crypt('x', 'abcdefghijklmnop'));
  });
});

describe('makeSalt', () => {
  it('gives 16 crypt-alphabet characters', () => {
    const random = createRandom();
    for (let i = 0; i < 200; i++) expect(makeSalt(random)).toMatch(/^[./0-9A-Za-z]{16}$/);
  });

  it('is reproducible with a seed and differs between calls', () => {
    const a = createRandom('seed');
    const b = createRandom('seed');
    const first = makeSalt(a);
    expect(makeSalt(b)).toBe(first);
    expect(makeSalt(a)).not.toBe(first);
  });

  it('uses the whole alphabet', () => {
    const random = createRandom('alphabet');
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) for (const ch of makeSalt(random)) seen.add(ch);
    expect(seen.size).toBe(64);
  });
});

describe('passwordChangeDays', () => {
  it('counts whole days since the epoch', () => {
    expect(passwordChangeDays(0)).toBe(0);
    expect(passwordChangeDays(86_399)).toBe(0);
    expect(passwordChangeDays(86_400)).toBe(1);
    expect(passwordChangeDays(1_700_000_000)).toBe(19675); // 2023-11-14
    expect(passwordChangeDays(Date.UTC(2024, 0, 1) / 1000)).toBe(19723);
  });

  it('rejects nonsense', () => {
    expect(() => passwordChangeDays(-1)).toThrow(Img2vmError);
    expect(() => passwordChangeDays(Number.NaN)).toThrow(Img2vmError);
  });
});

describe('setRootPassword', () => {
  const debianShadow = [
    'root:*:19800:0:99999:7:::',
    'daemon:*:19800:0:99999:7:::',
    'bin:*:19800:0:99999:7:::',
    'sys:*:19800:0:99999:7:::',
    'sync:*:19800:0:99999:7:::',
    'games:*:19800:0:99999:7:::',
    'man:*:19800:0:99999:7:::',
    'lp:*:19800:0:99999:7:::',
    'mail:*:19800:0:99999:7:::',
    'news:*:19800:0:99999:7:::',
    '_apt:*:19800:0:99999:7:::',
    'nobody:*:19800:0:99999:7:::',
    '',
  ].join('\n');

  it('sets root on a Debian-like shadow and leaves every other line alone', () => {
    const random = createRandom('shadow');
    const hash = sha512Crypt('s3cret', makeSalt(random));
    const days = passwordChangeDays(1_700_000_000);
    const out = setRootPassword(debianShadow, hash, days);

    const before = debianShadow.split('\n');
    const after = out.split('\n');
    expect(after).toHaveLength(before.length);
    expect(out.endsWith('\n')).toBe(true);
    expect(after.slice(1)).toEqual(before.slice(1));

    const fields = after[0]!.split(':');
    expect(fields).toHaveLength(9);
    expect(fields[0]).toBe('root');
    expect(fields[2]).toBe(String(days));
    expect(fields.slice(3)).toEqual(['0', '99999', '7', '', '', '']);

    // The stored hash verifies: recompute it from its own salt.
    const parsed = parseCrypt(fields[1]!);
    expect(parsed.salt).toHaveLength(16);
    expect(sha512Crypt('s3cret', parsed.salt, parsed.rounds)).toBe(fields[1]);
    expect(sha512Crypt('wrong', parsed.salt, parsed.rounds)).not.toBe(fields[1]);
  });

  it('keeps a hash with rounds verifiable', () => {
    const hash = sha512Crypt('pw', 'abcdefgh', 20000);
    const field = setRootPassword(debianShadow, hash, 1).split('\n')[0]!.split(':')[1]!;
    const parsed = parseCrypt(field);
    expect(parsed.rounds).toBe(20000);
    expect(sha512Crypt('pw', parsed.salt, parsed.rounds)).toBe(field);
  });

  it('null locks password login with "*" and keeps aging fields', () => {
    const shadow = 'root:$6$old$abc:18000:1:60:14:30:20000:\nuser:!:18000::::::\n';
    expect(setRootPassword(shadow, null, 19999)).toBe('root:*:19999:1:60:14:30:20000:\nuser:!:18000::::::\n');
  });

  it('preserves a missing trailing newline, comments, odd lines and CRLF elsewhere', () => {
    const shadow = 'daemon:*:1:0:99999:7:::\r\n# comment\n\nroot:x:2:0:99999:7:::\nzed:*:3::::::';
    expect(setRootPassword(shadow, 'HASH', 5)).toBe(
      'daemon:*:1:0:99999:7:::\r\n# comment\n\nroot:HASH:5:0:99999:7:::\nzed:*:3::::::',
    );
  });

  it('does not mistake look-alike names for root', () => {
    const shadow = 'rootless:*:1:0:99999:7:::\n';
    expect(setRootPassword(shadow, 'H', 7)).toBe('root:H:7:0:99999:7:::\nrootless:*:1:0:99999:7:::\n');
  });

  it('adds a root line when there is none', () => {
    expect(setRootPassword('', 'H', 7)).toBe('root:H:7:0:99999:7:::\n');
    expect(setRootPassword('bin:*:1:0:99999:7:::\n', null, 7)).toBe('root:*:7:0:99999:7:::\nbin:*:1:0:99999:7:::\n');
    expect(setRootPassword('bin:*:1:0:99999:7:::', null, 7)).toBe('root:*:7:0:99999:7:::\nbin:*:1:0:99999:7:::');
  });

  it('only changes the first root entry and pads a short one', () => {
    expect(setRootPassword('root:x\nroot:y:1:::::::\n', 'H', 3)).toBe('root:H:3\nroot:y:1:::::::\n');
  });

  it('refuses hashes that would corrupt the file', () => {
    expect(() => setRootPassword(debianShadow, 'a:b', 1)).toThrow(Img2vmError);
    expect(() => setRootPassword(debianShadow, 'a\nb', 1)).toThrow(Img2vmError);
    expect(() => setRootPassword(debianShadow, '', 1)).toThrow(Img2vmError);
    expect(() => setRootPassword(debianShadow, 'H', -1)).toThrow(Img2vmError);
    expect(() => setRootPassword(debianShadow, 'H', 1.5)).toThrow(Img2vmError);
  });
});
