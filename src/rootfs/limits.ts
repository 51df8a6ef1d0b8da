// The limits a layer is held to, in one place: what Linux and ext4 cannot hold, and what bounds img2vm's memory on hostile input.
//
// The flattened tree lives in memory (file contents do not), so what it costs grows with the
// number of entries, their names and link targets, and their extended attributes. Each of those
// has a cap here, checked as layers stream in, so an image too big to hold is refused early with
// an error that names the cap, instead of exhausting memory or writing a file system that fails
// later. README.md ("Limits") lists them with their reasons; keep the two in step.
import { Img2vmError } from '../core/errors.js';

/** Longest name component (Linux's NAME_MAX). */
export const NAME_MAX = 255;
/** Linux's PATH_MAX counts the terminating NUL: a path string has at most 4095 bytes. */
export const PATH_MAX = 4096;
/** Linux's limit on symlinks followed in one lookup (MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;
/** The prefix of a whiteout's name: the entry is never made, it hides the name after the prefix. */
export const WHITEOUT_PREFIX = '.wh.';

/**
 * Names in the flattened tree (files, directories, symlinks, devices; each name of a hard link),
 * counted as they come and go. The tree costs about 155 bytes an entry and a whole conversion peaks
 * near 290 MiB at 500,000 entries (bench/entries.mjs --mode cli: 500,000 entries in directories of
 * every size, with links: 284-288 MiB; 990,000 empty files: 354 MiB; a million mixed: 410 MiB), so
 * this default keeps a conversion within the 300 MB the benchmark holds. IMG2VM_MAX_ENTRIES raises it
 * for a bigger image on a machine with the memory (about 400 bytes an entry above the default).
 */
export function maxEntries(): number {
  return maxEntriesFrom(process.env.IMG2VM_MAX_ENTRIES);
}

/** The entry cap an IMG2VM_MAX_ENTRIES value asks for (unset or empty: 500,000); anything but a positive count is refused. */
export function maxEntriesFrom(v: string | undefined): number {
  if (v === undefined || v === '') return 500_000;
  if (!/^[1-9][0-9]{0,9}$/.test(v)) {
    throw new Img2vmError(
      'usage',
      `IMG2VM_MAX_ENTRIES="${v.slice(0, 40)}" is not a count of entries`,
      'give a whole number, e.g. IMG2VM_MAX_ENTRIES=2000000, or unset it for 500,000',
    );
  }
  return Number(v);
}

/**
 * Bytes of all names and symlink targets in the tree. A million entries with 20-byte names hold
 * 20 MB; without a cap a hostile layer of 4 KiB symlink targets would hold 4 GB.
 */
export const MAX_NAME_BYTES = 64 * 1024 * 1024;

/**
 * One extended header (a PAX 'x' record set, summed over consecutive ones, or a GNU long name or
 * link): it carries a path, a link target (4095 bytes each at most) and xattrs (which ext4 holds
 * in about 4 KiB per inode), so anything near a mebibyte is not a real entry.
 */
export const MAX_EXTENDED_HEADER_BYTES = 1024 * 1024;

/**
 * Data regions in one sparse file's map (GNU tar -S, bsdtar by default). The map is held while the
 * file streams, as two numbers a region; a real file has one region per run of data between holes,
 * so a million is far beyond any image's file and 16 MiB of memory at most.
 */
export const MAX_SPARSE_REGIONS = 1_000_000;

/**
 * An entry's extended attributes as ext4 stores them (per attribute 16 bytes, the name without its
 * user./trusted./security. prefix and the value, each padded to 4): one 4 KiB xattr block less its
 * 32-byte header and 4-byte end marker. img2vm's ext4 writer has no ea_inode feature, so what does
 * not fit in the inode body and one block cannot be written; anything up to this always fits.
 */
export const MAX_ENTRY_XATTR_BYTES = 4096 - 32 - 4;

/**
 * Extended attributes held in memory over the whole tree, each distinct set of an entry's
 * attributes counted once by its ext4 size plus XATTR_HELD_OVERHEAD per attribute (identical sets,
 * such as one SELinux label on every file, are shared). Real images hold well under a megabyte.
 */
export const MAX_TOTAL_XATTR_BYTES = 32 * 1024 * 1024;
/** What one attribute costs in memory beyond its bytes (a Buffer and a Map entry), for MAX_TOTAL_XATTR_BYTES. */
export const XATTR_HELD_OVERHEAD = 128;

const REFUSE_HINT =
  'img2vm holds the file tree in memory while it writes the disk; make the image smaller (fewer files or layers with less metadata), or report the image if it is a real one';

/** The error for a cap: it names the cap, its value, and what the image had. */
export function overLimit(limit: string, value: number, what: string, hint = REFUSE_HINT): Img2vmError {
  return new Img2vmError('badImage', `${what}; the limit ${limit} is ${value.toLocaleString('en-US')}`, hint);
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

const PREFIXES = ['user.', 'trusted.', 'security.'];

/** Bytes ext4 needs for one attribute in an xattr block (entry header, name without its namespace prefix, value). */
export function xattrDiskBytes(name: string, value: Uint8Array): number {
  let n = name.length;
  if (name.startsWith('system.posix_acl_'))
    n = 0; // stored by index; the on-disk ACL is no longer than the xattr form
  else for (const p of PREFIXES) if (name.startsWith(p)) n -= p.length;
  return 16 + pad4(n) + pad4(value.length);
}
