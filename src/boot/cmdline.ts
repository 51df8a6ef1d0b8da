// The kernel command line a user adds (--kernel-cmdline): split as the kernel splits it, refused where a loader
// could not hand the kernel exactly those bytes, and bounded; and the names from the image that boot entries show.
import { Img2vmError } from '../core/errors.js';

/**
 * At most this many bytes of --kernel-cmdline. x86 kernels take 2048 bytes with the NUL (the boot protocol's
 * cmdline_size is 2047), and that must also hold img2vm's own arguments and GRUB's BOOT_IMAGE=<kernel path>; GRUB
 * drops the arguments that do not fit without a word (grub_create_loader_cmdline in grub-core/lib/cmdline.c).
 */
export const MAX_USER_CMDLINE_BYTES = 1024;

const CONTROL = /\p{Cc}/u;
const CONTROL_NAMES: Record<number, string> = {
  0: 'NUL',
  9: 'tab',
  10: 'newline',
  13: 'carriage return',
  27: 'escape',
  127: 'delete',
};

/** One argument as the kernel reads the command line, and where it starts (in characters, from 0). */
export interface KernelArg {
  text: string;
  at: number;
}

/**
 * Splits a command line as Linux does (lib/cmdline.c, next_arg): a space ends an argument except between double
 * quotes, and every " opens or closes quoting; nothing escapes a quote. The kernel's other whitespace is control
 * characters, refused before this; only ASCII space counts, so no byte of a non-ASCII character is ever changed.
 */
export function kernelArgs(cmdline: string): KernelArg[] {
  const chars = Array.from(cmdline);
  const out: KernelArg[] = [];
  let i = 0;
  while (i < chars.length) {
    while (i < chars.length && chars[i] === ' ') i++;
    if (i >= chars.length) break;
    const at = i;
    let quoted = false;
    while (i < chars.length && (quoted || chars[i] !== ' ')) {
      if (chars[i] === '"') quoted = !quoted;
      i++;
    }
    out.push({ text: chars.slice(at, i).join(''), at });
  }
  return out;
}

function describeChar(c: string): string {
  const code = c.codePointAt(0)!;
  const u = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  const name = CONTROL_NAMES[code];
  return name ? `${/^[aeiou]/.test(name) ? 'an' : 'a'} ${name} (${u})` : u;
}

/**
 * Why GRUB cannot pass this argument to the kernel byte for byte, or undefined when it can. GRUB's `linux` command
 * rebuilds the command line from its own argument words (grub-core/lib/cmdline.c): it puts a backslash before every
 * \, ' and " and wraps a word that holds a space in double quotes, and the kernel removes neither. So an argument
 * reaches the kernel unchanged only when it holds none of the three, or when it is "..." around a whole argument
 * that holds a space and no other quote (the word inside, GRUB quotes it again).
 */
function grubProblem(arg: KernelArg): { at: number; char: string; why: string; hint: string } | undefined {
  const chars = Array.from(arg.text);
  const bad = chars.findIndex((c) => c === "'" || c === '\\');
  if (bad >= 0) {
    return {
      at: arg.at + bad,
      char: chars[bad]!,
      why: 'GRUB hands it to the kernel with a backslash before it, which the kernel keeps',
      hint: `leave ${chars[bad]} out of --kernel-cmdline, or use --bootloader systemd-boot (with --boot uefi), which passes it as it is`,
    };
  }
  const quotes = chars.flatMap((c, i) => (c === '"' ? [i] : []));
  if (quotes.length === 0) return undefined;
  const inner = chars.filter((c) => c !== '"').join('');
  const rewrite = inner.includes(' ') ? `"${inner}"` : inner;
  const base = { at: arg.at + quotes[0]!, char: '"' };
  if (quotes.length % 2 === 1) {
    return {
      ...base,
      why: 'the quote is not closed, and GRUB can hand the kernel double quotes only around a whole argument that holds a space',
      hint: 'close the quote around the whole argument, or leave it out',
    };
  }
  const whole = quotes.length === 2 && quotes[0] === 0 && quotes[1] === chars.length - 1;
  if (whole && inner.includes(' ')) return undefined;
  if (whole) {
    return {
      ...base,
      why: 'GRUB drops quotes around an argument without a space',
      hint: `write ${rewrite} without the quotes`,
    };
  }
  return {
    ...base,
    why: 'GRUB can hand the kernel double quotes only around a whole argument that holds a space',
    hint: `write ${rewrite} instead of ${arg.text} (the kernel reads both the same), or use --bootloader systemd-boot (with --boot uefi), which passes quotes as they are`,
  };
}

/**
 * Checks --kernel-cmdline and returns it as the loaders get it: its arguments joined by one space (runs of spaces
 * mean nothing more to the kernel), or undefined when it holds none. With GRUB among the loaders, what GRUB would
 * change on the way is refused too (grubProblem). Every refusal is a usage error that names the character and where.
 */
export function checkKernelCmdline(cmdline: string | undefined, opts: { grub: boolean }): string | undefined {
  if (cmdline === undefined) return undefined;
  const chars = Array.from(cmdline);
  const control = chars.findIndex((c) => CONTROL.test(c));
  if (control >= 0) {
    throw new Img2vmError(
      'usage',
      `--kernel-cmdline has a control character, ${describeChar(chars[control]!)} at character ${control + 1}: the kernel command line is one line of printable text`,
      'separate arguments with spaces, and leave control characters out',
    );
  }
  const args = kernelArgs(cmdline);
  if (opts.grub) {
    for (const a of args) {
      const p = grubProblem(a);
      if (p)
        throw new Img2vmError(
          'usage',
          `--kernel-cmdline has ${p.char} at character ${p.at + 1} (in ${a.text}): ${p.why}`,
          p.hint,
        );
    }
  }
  const joined = args.map((a) => a.text).join(' ');
  const bytes = Buffer.byteLength(joined);
  if (bytes > MAX_USER_CMDLINE_BYTES) {
    throw new Img2vmError(
      'usage',
      `--kernel-cmdline is ${bytes} bytes; img2vm takes at most ${MAX_USER_CMDLINE_BYTES}`,
      'x86 kernels read 2048 bytes of command line in all, and GRUB silently drops the arguments beyond; shorten it',
    );
  }
  return joined || undefined;
}

/**
 * A distribution's name (PRETTY_NAME, from the image) as a boot menu shows it: control characters become spaces
 * (a newline would start a line of its own in grub.cfg or a BLS entry), runs of spaces one, at most 100 characters.
 */
export function menuTitle(name: string): string {
  const t = Array.from(
    name
      .replace(/[\p{Cc}\p{Zl}\p{Zp}]/gu, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  )
    .slice(0, 100)
    .join('')
    .trim();
  return t || 'Linux';
}

/**
 * A kernel version img2vm can put into file names on the ESP (FAT), BLS entries and grub.cfg: what `uname -r`
 * prints on the distributions there are (letters, digits, . _ + ~ -; 64 characters, the kernel's own limit).
 */
export const KERNEL_VERSION = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$/;

/** Refuses a kernel whose version (from its file name in the image's /boot) is not one (KERNEL_VERSION). */
export function checkKernelVersion(version: string): void {
  if (KERNEL_VERSION.test(version)) return;
  const shown = JSON.stringify(Array.from(version).slice(0, 80).join('')).replace(
    /\p{Cc}/gu,
    (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`,
  );
  throw new Img2vmError(
    'badImage',
    `the kernel version ${shown} (from its file name, vmlinuz-VERSION) is not one img2vm can name boot entries and files on the EFI system partition with`,
    "a kernel version is letters, digits and . _ + ~ - (at most 64, as uname -r prints it); rename the kernel and its initrd in the image's /boot",
  );
}
