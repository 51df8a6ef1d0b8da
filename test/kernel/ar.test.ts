// The ar container of .deb files: members by offset, and every header checked against the file, so truncated or hostile files fail cleanly.
import { describe, expect, it } from 'vitest';
import { ArError, debMembers, readArMembers } from '../../src/kernel/ar.js';
import { arOf } from '../../fixtures/debian-mirror/kernel.js';

const readerOf = (b: Buffer) => async (off: number, len: number) => b.subarray(off, off + len);

const DEB = arOf([
  { name: 'debian-binary', data: Buffer.from('2.0\n') },
  { name: 'control.tar.xz', data: Buffer.from('ccc') },
  { name: 'data.tar.xz', data: Buffer.from('ddddd') },
]);

describe('readArMembers', () => {
  it('lists members with their offsets, skipping the padding after odd sizes', async () => {
    expect(await readArMembers(readerOf(DEB), DEB.length)).toEqual([
      { name: 'debian-binary', offset: 68, size: 4 },
      { name: 'control.tar.xz', offset: 132, size: 3 },
      { name: 'data.tar.xz', offset: 196, size: 5 },
    ]);
    expect(DEB.length).toBe(202); // 5 bytes of data and one padding byte at the end
    expect(await readArMembers(readerOf(DEB.subarray(0, 201)), 201)).toHaveLength(3);
  });

  it('takes GNU names ending in a slash', async () => {
    const b = Buffer.from(DEB);
    b.write('debian-binary/  ', 8, 'latin1');
    expect((await readArMembers(readerOf(b), b.length))[0]!.name).toBe('debian-binary');
  });

  const hostile: [string, (b: Buffer) => Buffer, RegExp][] = [
    ['a bad magic', (b) => Buffer.concat([Buffer.from('!<arc>\n\n'), b.subarray(8)]), /bad magic/],
    ['a truncated member', (b) => b.subarray(0, 199), /runs past the end of the file.*truncated/],
    ['a truncated header', (b) => b.subarray(0, 150), /truncated member header at offset 136/],
    [
      'a bad header terminator',
      (b) => Buffer.concat([b.subarray(0, 66), Buffer.from('x\n'), b.subarray(68)]),
      /bad member header at offset 8/,
    ],
    [
      'a non-numeric size',
      (b) => Buffer.concat([b.subarray(0, 56), Buffer.from('-4        '), b.subarray(66)]),
      /invalid size field/,
    ],
    [
      'a huge size',
      (b) => Buffer.concat([b.subarray(0, 56), Buffer.from('9999999999'), b.subarray(66)]),
      /runs past the end/,
    ],
    [
      'an extended name',
      (b) => Buffer.concat([b.subarray(0, 8), Buffer.from('/123            '), b.subarray(24)]),
      /extended name table/,
    ],
    [
      'a path as name',
      (b) => Buffer.concat([b.subarray(0, 8), Buffer.from('../etc/passwd   '), b.subarray(24)]),
      /invalid name/,
    ],
  ];
  it.each(hostile)('refuses %s', async (_, mutate, msg) => {
    const b = mutate(DEB);
    await expect(readArMembers(readerOf(b), b.length)).rejects.toThrow(ArError);
    await expect(readArMembers(readerOf(b), b.length)).rejects.toThrow(msg);
  });

  it('refuses more members than a .deb could have', async () => {
    const b = arOf(Array.from({ length: 70 }, (_, i) => ({ name: `m${i}`, data: Buffer.from('x') })));
    await expect(readArMembers(readerOf(b), b.length)).rejects.toThrow(/more than 64 members/);
  });
});

describe('debMembers', () => {
  it('finds the data archive of a .deb', async () => {
    expect(await debMembers(readerOf(DEB), DEB.length)).toEqual({
      version: '2.0',
      control: { name: 'control.tar.xz', offset: 132, size: 3 },
      data: { name: 'data.tar.xz', offset: 196, size: 5 },
    });
  });

  const cases: [string, { name: string; data: Buffer }[], RegExp][] = [
    ['no debian-binary first', [{ name: 'data.tar.xz', data: Buffer.from('d') }], /first member is not debian-binary/],
    [
      'a format version 3',
      [{ name: 'debian-binary', data: Buffer.from('3.0\n') }],
      /unsupported .deb format version "3.0"/,
    ],
    [
      'no data member',
      [
        { name: 'debian-binary', data: Buffer.from('2.0\n') },
        { name: 'control.tar.gz', data: Buffer.from('c') },
      ],
      /no data.tar member/,
    ],
    [
      'data before control',
      [
        { name: 'debian-binary', data: Buffer.from('2.0\n') },
        { name: 'data.tar.xz', data: Buffer.from('d') },
        { name: 'control.tar.xz', data: Buffer.from('c') },
      ],
      /unexpected member "data.tar.xz"/,
    ],
    [
      'two data members',
      [
        { name: 'debian-binary', data: Buffer.from('2.0\n') },
        { name: 'control.tar', data: Buffer.from('c') },
        { name: 'data.tar', data: Buffer.from('d') },
        { name: 'data.tar.xz', data: Buffer.from('d') },
      ],
      /unexpected member "data.tar.xz"/,
    ],
  ];
  it.each(cases)('refuses %s', async (_, members, msg) => {
    const b = arOf(members);
    await expect(debMembers(readerOf(b), b.length)).rejects.toThrow(msg);
  });

  it('ignores members reserved for extensions (leading underscore)', async () => {
    const b = arOf([
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: '_gpgbuilder', data: Buffer.from('sig') },
      { name: 'control.tar.zst', data: Buffer.from('c') },
      { name: 'data.tar.zst', data: Buffer.from('d') },
    ]);
    expect((await debMembers(readerOf(b), b.length)).data.name).toBe('data.tar.zst');
  });
});
