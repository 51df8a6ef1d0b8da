// The limits a layer is held to, in one place: what Linux and ext4 cannot hold, and what bounds img2vm's memory on hostile input.

/** Longest name component (NAME_MAX). */
export const NAME_MAX = 255;
/** Linux's PATH_MAX counts the terminating NUL: a path string has at most 4095 bytes. */
export const PATH_MAX = 4096;
/** Linux's limit on symlinks followed in one lookup (MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;
/** The prefix of a whiteout's name: the entry is never made, it hides the name after the prefix. */
export const WHITEOUT_PREFIX = '.wh.';
