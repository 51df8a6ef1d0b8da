// printable(): what img2vm prints that came from outside shows control characters as escapes, never as controls.
import { describe, expect, it } from 'vitest';
import { printable, printableJson } from '../../src/core/printable.js';

/** Every character a terminal could act on, as the test sees it (tab and newline are text). */
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

describe('printable', () => {
  it('leaves ordinary text, tabs, newlines and every well-formed UTF-8 character alone', () => {
    const s = 'layer "usr/lib/é/日本/🦀" has\ttwo\nlines (a\\b) ~!@#$%^&*';
    expect(printable(s)).toBe(s);
  });

  it('shows the OSC title and clipboard sequences, CSI, BEL and a lone ESC as escapes', () => {
    expect(printable('\x1b]0;pwned\x07')).toBe('\\x1b]0;pwned\\x07');
    expect(printable('\x1b]52;c;cHduZWQ=\x1b\\')).toBe('\\x1b]52;c;cHduZWQ=\\x1b\\');
    expect(printable('a\x1b[2Jb\x1bc')).toBe('a\\x1b[2Jb\\x1bc');
    expect(printable('\x1b')).toBe('\\x1b');
  });

  it('escapes every C0 control but tab and newline, DEL, and every C1 control', () => {
    for (let c = 0; c < 0x20; c++) {
      const ch = String.fromCharCode(c);
      if (ch === '\t' || ch === '\n') expect(printable(ch)).toBe(ch);
      else if (ch === '\r') expect(printable(ch)).toBe('\\r');
      else expect(printable(ch)).toBe(`\\x${c.toString(16).padStart(2, '0')}`);
    }
    expect(printable('\x7f')).toBe('\\x7f');
    for (let c = 0x80; c <= 0x9f; c++) expect(printable(String.fromCharCode(c))).toBe(`\\x${c.toString(16)}`);
    expect(printable('\u00a0\u00ff')).toBe('\u00a0\u00ff');
  });

  it('escapes carriage return (it would overwrite what came before on the line) and, when asked, newlines', () => {
    expect(printable('safe\rEVIL')).toBe('safe\\rEVIL');
    expect(printable('one\ntwo', { newlines: false })).toBe('one\\ntwo');
  });

  it('escapes bidirectional overrides and isolates, line and paragraph separators, and lone surrogates', () => {
    expect(printable('a\u202eb\u2066c\u2069d\u200fe\u2028f\u2029')).toBe(
      'a\\u202eb\\u2066c\\u2069d\\u200fe\\u2028f\\u2029',
    );
    expect(printable('x\ud800y\udc00z')).toBe('x\\ud800y\\udc00z');
    expect(printable('\ud83e\udd80')).toBe('🦀');
  });

  it('shows bytes that are not UTF-8 as \\xNN, and decodes the rest', () => {
    expect(printable(Buffer.from([0x61, 0xff, 0x62, 0xc3, 0xa9, 0xc3]))).toBe('a\\xffbé\\xc3');
    // overlong "/", a UTF-16 surrogate in UTF-8, and beyond U+10FFFF are not UTF-8 either
    expect(printable(Buffer.from([0xc0, 0xaf]))).toBe('\\xc0\\xaf');
    expect(printable(Buffer.from([0xe0, 0x80, 0xaf]))).toBe('\\xe0\\x80\\xaf');
    expect(printable(Buffer.from([0xed, 0xa0, 0x80]))).toBe('\\xed\\xa0\\x80');
    expect(printable(Buffer.from([0xf4, 0x90, 0x80, 0x80]))).toBe('\\xf4\\x90\\x80\\x80');
    expect(printable(Buffer.from('日本🦀', 'utf8'))).toBe('日本🦀');
    // control characters among the bytes are escaped like those of a string
    expect(printable(Buffer.from('\x1b]0;t\x07\xc2\x9b', 'latin1'))).toBe('\\x1b]0;t\\x07\\x9b');
  });

  it('changes nothing when applied twice, and leaves no control character behind whatever it is given', () => {
    const all = Array.from({ length: 0x3000 }, (_, i) => String.fromCharCode(i)).join('') + '\ud800\udfff\udc00';
    const once = printable(all);
    expect(once).not.toMatch(CONTROL);
    expect(printable(once)).toBe(once);
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(printable(bytes)).not.toMatch(CONTROL);
  });
});

describe('printableJson', () => {
  it('is JSON that reads back to the same value, with no control character in its text', () => {
    const v = { message: 'name \x1b]0;t\x07 \x9b31m \x7f \u202e \u2028 \ud800 ok é' };
    // JSON.stringify alone leaves DEL and C1 raw:
    expect(JSON.stringify(v)).toMatch(CONTROL);
    const text = printableJson(v);
    expect(text).not.toMatch(CONTROL);
    expect(JSON.parse(text)).toEqual(v);
    expect(printableJson(v, null)).not.toContain('\n');
  });
});
