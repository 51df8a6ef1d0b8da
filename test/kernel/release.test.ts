// Release files: fields, the SHA256 list, archive dates, and the checks that keep a replayed, expired or future-dated Release out.
import { describe, expect, it } from 'vitest';
import { parseArchiveDate, parseParagraph } from '../../src/kernel/deb822.js';
import { checkRelease, parseRelease, ReleaseError } from '../../src/kernel/release.js';

const H = 'be3d7d96a040eda0505c1808cccc67f183bbc05dff0842c50f88e6c396557412';

const TRIXIE = `Origin: Debian
Label: Debian
Suite: stable
Version: 13.8
Codename: trixie
Date: Sat, 21 Nov 2026 09:15:44 UTC
Acquire-By-Hash: yes
Architectures: all amd64 arm64
Components: main contrib non-free-firmware non-free
Description: Debian 13.8 Released 21 November 2026
MD5Sum:
 203e1451a4c2e0edf3646a5da3cec2d8  9679304 main/binary-amd64/Packages.xz
SHA256:
 2efd6103f013081f8118f4c9f228739bc97bff2e4e1de496f80458c7e72a24ac 56634892 main/binary-amd64/Packages
 ${H}  9679304 main/binary-amd64/Packages.xz`;

describe('parseRelease', () => {
  it('reads identity, dates and the SHA256 list (ignoring MD5)', () => {
    const r = parseRelease(TRIXIE);
    expect(r).toMatchObject({
      origin: 'Debian',
      suite: 'stable',
      codename: 'trixie',
      acquireByHash: true,
      validUntil: undefined,
    });
    expect(r.date.toISOString()).toBe('2026-11-21T09:15:44.000Z');
    expect(r.components).toEqual(['main', 'contrib', 'non-free-firmware', 'non-free']);
    expect([...r.sha256]).toEqual([
      [
        'main/binary-amd64/Packages',
        { sha256: '2efd6103f013081f8118f4c9f228739bc97bff2e4e1de496f80458c7e72a24ac', size: 56634892 },
      ],
      ['main/binary-amd64/Packages.xz', { sha256: H, size: 9679304 }],
    ]);
  });

  const bad: [string, string, RegExp][] = [
    ['no Date', TRIXIE.replace(/^Date: .*\n/m, ''), /no Date/],
    ['a malformed Date', TRIXIE.replace(/^Date: .*$/m, 'Date: yesterday'), /not a date/],
    ['a malformed Valid-Until', `${TRIXIE}\nValid-Until: soon`, /Valid-Until "soon" is not a date/],
    ['no SHA256 list', TRIXIE.replace(/SHA256:[\s\S]*/, ''), /no SHA256 list/],
    ['a short hash', TRIXIE.replace(H, 'abc'), /malformed SHA256 line/],
    ['an upper-case hash', TRIXIE.replace(H, H.toUpperCase()), /malformed SHA256 line/],
    [
      'an escaping path',
      TRIXIE.replace(`${H}  9679304 main/binary-amd64/Packages.xz`, `${H} 1 main/../../etc/passwd`),
      /unsafe path/,
    ],
    [
      'an absolute path',
      TRIXIE.replace(`${H}  9679304 main/binary-amd64/Packages.xz`, `${H} 1 /etc/passwd`),
      /unsafe path/,
    ],
    ['a path listed twice', `${TRIXIE}\n ${H} 1 main/binary-amd64/Packages.xz`, /twice/],
    ['a field given twice', `${TRIXIE}\nCodename: bookworm`, /appears twice/],
    ['a continuation before any field', ` x\n${TRIXIE}`, /continuation line/],
  ];
  it.each(bad)('refuses %s', (_, text, msg) => {
    expect(() => parseRelease(text)).toThrow(ReleaseError);
    expect(() => parseRelease(text)).toThrow(msg);
  });
});

describe('checkRelease', () => {
  const now = new Date('2026-12-01T12:00:00Z');
  const r = parseRelease(TRIXIE);
  const sec = parseRelease(
    `${TRIXIE.replace('Codename: trixie', 'Codename: trixie-security').replace('Suite: stable', 'Suite: stable-security')}\nValid-Until: Mon, 07 Dec 2026 00:22:33 UTC`,
  );

  it('accepts the suite by codename or by alias', () => {
    expect(() => checkRelease(r, { suite: 'trixie', now })).not.toThrow();
    expect(() => checkRelease(r, { suite: 'stable', now })).not.toThrow();
    expect(() => checkRelease(sec, { suite: 'trixie-security', now })).not.toThrow();
  });

  it('refuses another suite (a replayed Release)', () => {
    expect(() => checkRelease(r, { suite: 'bookworm', now })).toThrow(/for suite trixie, not bookworm/);
  });

  it('refuses an expired Release unless told to accept it', () => {
    const later = new Date('2026-12-08T00:00:00Z');
    expect(() => checkRelease(sec, { suite: 'trixie-security', now: later })).toThrow(/expired on 2026-12-07T00:22:33/);
    expect(() => checkRelease(sec, { suite: 'trixie-security', now: later, allowExpired: true })).not.toThrow();
  });

  it('refuses a Release dated far in the future, and a Valid-Until before Date', () => {
    expect(() => checkRelease(r, { suite: 'trixie', now: new Date('2026-11-01T00:00:00Z') })).toThrow(
      /20 days in the future/,
    );
    expect(() => checkRelease(r, { suite: 'trixie', now: new Date('2026-11-15T00:00:00Z') })).not.toThrow();
    const odd = parseRelease(`${TRIXIE}\nValid-Until: Fri, 20 Nov 2026 00:00:00 UTC`);
    expect(() => checkRelease(odd, { suite: 'trixie', now, allowExpired: true })).toThrow(/before its Date/);
  });
});

describe('deb822 helpers', () => {
  it('parses archive dates in UTC and with numeric zones', () => {
    expect(parseArchiveDate('Sat, 21 Nov 2026 09:15:44 UTC')?.toISOString()).toBe('2026-11-21T09:15:44.000Z');
    expect(parseArchiveDate('Sat, 21 Nov 2026 09:15:44 GMT')?.toISOString()).toBe('2026-11-21T09:15:44.000Z');
    expect(parseArchiveDate('21 Nov 2026 11:15:44 +0200')?.toISOString()).toBe('2026-11-21T09:15:44.000Z');
    for (const s of [
      '2026-11-21',
      'Sat, 21 Foo 2026 09:15:44 UTC',
      'Sat, 41 Nov 2026 09:15:44 UTC',
      'Sat, 21 Nov 2026 29:15:44 UTC',
    ])
      expect(parseArchiveDate(s)).toBeUndefined();
  });

  it('joins continuation lines and lower-cases field names', () => {
    expect([...parseParagraph('Package: a\nDescription: x\n y\n .\n z\n')]).toEqual([
      ['package', 'a'],
      ['description', 'x\ny\n.\nz'],
    ]);
  });
});
