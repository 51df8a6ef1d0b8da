// Debian version order as dpkg defines it: epochs, ~ before everything, digit runs numerically, letters before symbols.
import { describe, expect, it } from 'vitest';
import { compareDebVersions, isValidDebVersion, parseDebVersion, satisfies } from '../../src/kernel/debversion.js';

// Each pair is a < b (checked by `dpkg --compare-versions a lt b` on Debian 12).
const LESS: [string, string][] = [
  ['1.0~rc1', '1.0'],
  ['1.0~~', '1.0~'],
  ['1.0~~a', '1.0~'],
  ['1.0~', '1.0'],
  ['1.0', '1.0a'],
  ['1.0a', '1.0+'],
  ['1.0', '1.0.0'],
  ['1.0', '1.0-0.1'],
  ['1.0+b1', '1.0.1'],
  ['9', '10'],
  ['1.9', '1.10'],
  ['2.0', '1:0.1'],
  ['1:9.9', '2:0'],
  ['6.12.9-1', '6.12.10-1'],
  ['6.12.117-1', '6.12.118-1'],
  ['6.12.115-1', '6.12.115-2'],
  ['6.1.176-1', '6.1.192-3'],
  ['6.12.90+deb13-cloud-amd64', '6.12.90+deb13.1-cloud-amd64'],
  ['6.1.0-9-cloud-amd64', '6.1.0-57-cloud-amd64'],
  ['1.0-1', '1.0-1+b1'],
  ['1.0-1~bpo12+1', '1.0-1'],
  ['a', 'b'],
  ['1.0-a', '1.0-b'],
];

const EQUAL: [string, string][] = [
  ['1.0', '1.0'],
  ['0:1.0', '1.0'],
  ['1.0', '1.0-0'],
  ['1.01', '1.1'],
  ['1.0-001', '1.0-1'],
  ['00:1', '1'],
];

describe('compareDebVersions', () => {
  it.each(LESS)('%s < %s', (a, b) => {
    expect(compareDebVersions(a, b)).toBe(-1);
    expect(compareDebVersions(b, a)).toBe(1);
  });

  it.each(EQUAL)('%s = %s', (a, b) => {
    expect(compareDebVersions(a, b)).toBe(0);
    expect(compareDebVersions(b, a)).toBe(0);
  });

  it('sorts a list as dpkg does', () => {
    const v = ['1.0', '1.0~rc1', '1:0.5', '1.0-1', '0.9', '1.0+b1', '1.0~~'];
    expect([...v].sort(compareDebVersions)).toEqual(['0.9', '1.0~~', '1.0~rc1', '1.0', '1.0-1', '1.0+b1', '1:0.5']);
  });

  it('compares digit runs of any length without overflowing', () => {
    expect(compareDebVersions('1.99999999999999999999999', '1.100000000000000000000000')).toBe(-1);
    expect(compareDebVersions('99999999999999999999:1', '1:1')).toBe(1);
  });

  it('never throws on junk', () => {
    for (const s of ['', ':', '-', '::--', '\u0000', '~~~', 'abc:def'])
      expect(() => compareDebVersions(s, '1.0')).not.toThrow();
  });
});

describe('parseDebVersion and validity', () => {
  it('splits epoch, upstream and revision at the first colon and the last hyphen', () => {
    expect(parseDebVersion('2:6.12.9+deb13-cloud-1')).toEqual({
      epoch: 2,
      upstream: '6.12.9+deb13-cloud',
      revision: '1',
    });
    expect(parseDebVersion('1.0')).toEqual({ epoch: 0, upstream: '1.0', revision: '' });
  });

  it('accepts what the archive uses and rejects what dpkg would', () => {
    for (const v of ['6.12.118-1', '1:2.3~rc1-0+deb13u1', '20230311', '0.1']) expect(isValidDebVersion(v)).toBe(true);
    for (const v of ['', 'a1.0', '1.0-', '1 .0', '1.0_1', `1${'0'.repeat(300)}`])
      expect(isValidDebVersion(v)).toBe(false);
  });
});

describe('satisfies', () => {
  it('evaluates Depends relations', () => {
    expect(satisfies('6.12.118-1', '=', '6.12.118-1')).toBe(true);
    expect(satisfies('6.12.118-1', '=', '6.12.118-2')).toBe(false);
    expect(satisfies('1.1', '>=', '1.0')).toBe(true);
    expect(satisfies('1.0', '>>', '1.0')).toBe(false);
    expect(satisfies('1.0~', '<<', '1.0')).toBe(true);
    expect(satisfies('1.0', '<=', '1.0')).toBe(true);
  });
});
