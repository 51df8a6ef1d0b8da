// Builds the input of one `setfattr --restore` run for all the xattrs materialise() sets, so they cost one process rather than one per file.
import type { BinName } from './tree.js';

/** argv for setfattr: -h never follows a symlink, '-' reads the dump from stdin. */
export const SETFATTR_RESTORE_ARGV: readonly string[] = ['-h', '--restore=-'];

/**
 * getfattr's dump format: "# file: PATH", then "NAME=0xHEX" lines, then a blank line. setfattr
 * un-escapes \ooo in paths and names, so every byte outside a plain set is escaped: that keeps
 * newlines, '=' and non-UTF-8 bytes exact. Values are hex, hence binary-safe.
 */
export function xattrRestoreScript(items: Iterable<{ path: BinName; attrs: Iterable<[string, Buffer]> }>): Buffer {
  let s = '';
  for (const { path, attrs } of items) {
    let lines = '';
    for (const [name, value] of attrs) lines += `${escape(name)}=0x${value.toString('hex')}\n`;
    if (lines) s += `# file: ${escape(path)}\n${lines}\n`;
  }
  return Buffer.from(s, 'latin1');
}

function escape(bin: string): string {
  let out = '';
  for (let i = 0; i < bin.length; i++) {
    const c = bin.charCodeAt(i);
    const plain =
      (c >= 0x30 && c <= 0x39) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      c === 0x2e ||
      c === 0x2f ||
      c === 0x5f ||
      c === 0x2d ||
      c === 0x2b ||
      c === 0x40;
    out += plain ? bin[i] : `\\${c.toString(8).padStart(3, '0')}`;
  }
  return out;
}
