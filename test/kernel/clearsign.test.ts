// Clearsigned InRelease files: only the signed text counts; anything around or inside it that a signer would not write is refused.
import { describe, expect, it } from 'vitest';
import { ClearsignError, splitClearsigned } from '../../src/kernel/clearsign.js';
import { judgeStatus } from '../../src/kernel/gpgv.js';

const SIG = [
  '-----BEGIN PGP SIGNATURE-----',
  '',
  'iHUEARYIAB0WIQT0',
  'AQCq3d==',
  '=8YVe',
  '-----END PGP SIGNATURE-----',
];

function file(lines: string[]): Buffer {
  return Buffer.from(lines.join('\n'), 'latin1');
}

const GOOD = ['-----BEGIN PGP SIGNED MESSAGE-----', 'Hash: SHA256', '', 'Origin: Debian', 'Suite: stable', ...SIG, ''];

describe('splitClearsigned', () => {
  it('returns the signed text without the line break before the signature, and the armored signature', () => {
    const r = splitClearsigned(file(GOOD));
    expect(r.text.toString()).toBe('Origin: Debian\nSuite: stable');
    expect(r.signature.toString()).toBe(`${SIG.join('\n')}\n`);
    expect(r.hashes).toEqual(['SHA256']);
  });

  it('removes dash-escapes and trailing whitespace as RFC 4880 defines the signed text', () => {
    const r = splitClearsigned(
      file([
        '-----BEGIN PGP SIGNED MESSAGE-----',
        'Hash: SHA512, SHA256',
        '',
        '- -----not armor',
        'a  \t',
        '- - x',
        'b\r',
        ...SIG,
      ]),
    );
    expect(r.text.toString()).toBe('-----not armor\na\n- x\nb');
    expect(r.hashes).toEqual(['SHA512', 'SHA256']);
  });

  it('accepts CRLF files and blank lines around the message', () => {
    const crlf = Buffer.from(['', '  ', ...GOOD, '', ''].join('\r\n'), 'latin1');
    expect(splitClearsigned(crlf).text.toString()).toBe('Origin: Debian\nSuite: stable');
  });

  it('keeps non-UTF-8 bytes as they are', () => {
    const b = Buffer.concat([
      file(GOOD.slice(0, 3)),
      Buffer.from([0x0a, 0x44, 0x3a, 0x20, 0xe9, 0xff, 0x0a]),
      file(SIG),
    ]);
    expect(splitClearsigned(b).text).toEqual(Buffer.from([0x44, 0x3a, 0x20, 0xe9, 0xff]));
  });

  const refused: [string, string[] | Buffer, RegExp][] = [
    ['unsigned text before the message', ['Suite: evil', ...GOOD], /does not start with a clearsigned message/],
    ['text after the signature', [...GOOD, 'SHA256:', ' 00 1 x'], /text after the signature/],
    ['a second signed message after the first', [...GOOD, ...GOOD], /text after the signature/],
    [
      'a signed message nested in the text',
      ['-----BEGIN PGP SIGNED MESSAGE-----', 'Hash: SHA256', '', 'a', ...GOOD, ...SIG],
      /unescaped armor line "-----BEGIN PGP SIGNED MESSAGE-----"/,
    ],
    [
      'an unescaped dash line',
      ['-----BEGIN PGP SIGNED MESSAGE-----', 'Hash: SHA256', '', '-x', ...SIG],
      /unescaped armor line/,
    ],
    [
      'an armor header other than Hash',
      ['-----BEGIN PGP SIGNED MESSAGE-----', 'Hash: SHA256', 'Comment: hi', '', 'a', ...SIG],
      /only Hash: is allowed/,
    ],
    [
      'no blank line after the headers',
      ['-----BEGIN PGP SIGNED MESSAGE-----', 'Hash: SHA256'],
      /ends inside the armor headers/,
    ],
    ['no signature', ['-----BEGIN PGP SIGNED MESSAGE-----', 'Hash: SHA256', '', 'a'], /ends before the signature/],
    ['a truncated signature', [...GOOD.slice(0, -2)], /no END line/],
    [
      'junk inside the signature block',
      [
        '-----BEGIN PGP SIGNED MESSAGE-----',
        'Hash: SHA256',
        '',
        'a',
        '-----BEGIN PGP SIGNATURE-----',
        '',
        'abc',
        'Suite: x',
        '-----END PGP SIGNATURE-----',
      ],
      /unexpected line in the signature block/,
    ],
    ['a plain Release', ['Origin: Debian', 'Suite: stable'], /does not start with a clearsigned message/],
    ['an empty file', [], /empty/],
    ['NUL bytes', Buffer.from('-----BEGIN PGP SIGNED MESSAGE-----\n\0'), /NUL/],
  ];
  it.each(refused)('refuses %s', (_, input, msg) => {
    const b = Buffer.isBuffer(input) ? input : file(input);
    expect(() => splitClearsigned(b)).toThrow(ClearsignError);
    expect(() => splitClearsigned(b)).toThrow(msg);
  });
});

describe('judgeStatus (gpgv --status-fd)', () => {
  const valid = (fpr: string, hash = '8') => `[GNUPG:] VALIDSIG ${fpr} 2026-11-21 1795252580 0 4 0 1 ${hash} 01 ${fpr}`;
  const A = '4CB50190207B4758A3F73A796ED0E7B82643E131';
  const B = 'B8E5F13176D2A7A75220028078DBA3BC47EF2265';

  it('accepts a good signature and ignores signatures by keys the keyring lacks', () => {
    const s = [
      '[GNUPG:] NEWSIG',
      '[GNUPG:] ERRSIG 6ED0E7B82643E131 1 8 01 1795252580 9 -',
      '[GNUPG:] NO_PUBKEY 6ED0E7B82643E131',
      '[GNUPG:] NEWSIG',
      '[GNUPG:] GOODSIG 78DBA3BC47EF2265 Debian',
      valid(B),
    ].join('\n');
    expect(judgeStatus(s)).toEqual({ ok: true, signers: [B] });
  });

  it('refuses when any signature is bad, even beside a good one', () => {
    const s = [
      '[GNUPG:] NEWSIG',
      '[GNUPG:] GOODSIG 6ED0E7B82643E131 a',
      valid(A),
      '[GNUPG:] NEWSIG',
      '[GNUPG:] BADSIG 78DBA3BC47EF2265 b',
    ].join('\n');
    expect(judgeStatus(s)).toMatchObject({ ok: false, reason: expect.stringMatching(/BAD/) });
  });

  it('refuses only unknown keys, expired keys, weak digests, or nothing at all', () => {
    expect(judgeStatus('[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 1 1 8 01 0 9 -\n[GNUPG:] NO_PUBKEY 1')).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/ERRSIG/),
    });
    expect(judgeStatus(`[GNUPG:] NEWSIG\n[GNUPG:] EXPKEYSIG 6ED0E7B82643E131 a\n${valid(A)}`)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/EXPKEYSIG/),
    });
    expect(judgeStatus(`[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 6ED0E7B82643E131 a\n${valid(A, '2')}`)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/weak digest/),
    });
    expect(judgeStatus('')).toMatchObject({ ok: false });
    // GOODSIG without VALIDSIG (a forged status line in the user ID cannot start a line) is not enough.
    expect(judgeStatus('[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 6ED0E7B82643E131 x [GNUPG:] VALIDSIG')).toMatchObject({
      ok: false,
    });
  });
});
