// The grub.cfg img2vm writes (shared by the BIOS and EFI GRUB installs): one entry, serial and screen console.
import { ARCH, type GuestArch } from '../core/arch.js';
import type { GuestFile } from '../core/plan.js';
import { kernelArgs, menuTitle } from './cmdline.js';
import { kernelFiles, type LoaderInput } from './loader.js';

export interface GrubEntry {
  title: string;
  /** Paths as GRUB sees them on the root file system. */
  kernel: string;
  initrd?: string;
  cmdline: string;
  /**
   * GRUB's own serial terminal (PC UARTs); without it GRUB writes to the firmware's console, which UEFI on arm64
   * machines puts on their serial port itself.
   */
  serial?: boolean;
}

/**
 * GRUB's script lexer (grub-core/script/yylex.l) reads { } | & $ ; < > quotes, backslash and blanks specially, #
 * at the start of a word as a comment, * ? [ ] as wildcards, and some bare words (if, for, done ...) as reserved.
 * Inside single quotes every byte is itself, and a ' is written '\'' (close, an escaped quote, reopen).
 */
const GRUB_BARE = /^[A-Za-z0-9_.,:/=+@%^~-]+$/;
const GRUB_RESERVED = new Set([
  'case',
  'do',
  'done',
  'elif',
  'else',
  'esac',
  'fi',
  'for',
  'function',
  'if',
  'in',
  'select',
  'then',
  'until',
  'while',
]);

/** A string as one GRUB word that GRUB's parser turns back into exactly that string. */
export function grubQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** grubQuote when needed: plain words stay bare, so the usual grub.cfg reads as people write it. */
export function grubWord(s: string): string {
  return GRUB_BARE.test(s) && !GRUB_RESERVED.has(s) ? s : grubQuote(s);
}

/**
 * The kernel command line as the words of GRUB's `linux` line. GRUB rebuilds the command line from its argument
 * words, wrapping one with a space in double quotes; so a "..." argument goes in as the quoted word inside. What GRUB
 * cannot carry unchanged (see checkKernelCmdline) never gets here: the plan refuses it.
 */
export function grubArgs(cmdline: string): string {
  return kernelArgs(cmdline)
    .map(({ text }) => {
      const whole = /^"([^"]* [^"]*)"$/.exec(text);
      const word = whole ? whole[1]! : text;
      if (/["'\\\p{Cc}]/u.test(word))
        throw new Error(
          `kernel argument ${JSON.stringify(text)} cannot pass through GRUB unchanged; the plan should have refused it`,
        );
      return grubWord(word);
    })
    .join(' ');
}

export function renderGrubCfg(e: GrubEntry): string {
  return [
    "# Written by img2vm. The kernel and initrd paths follow Debian's /vmlinuz and /initrd.img links when present,",
    '# so kernel upgrades inside the guest keep booting.',
    ...(e.serial === false
      ? []
      : ['serial --unit=0 --speed=115200', 'terminal_input serial console', 'terminal_output serial console']),
    'set timeout=0',
    'set timeout_style=hidden',
    `menuentry ${grubQuote(menuTitle(e.title))} {`,
    '  insmod gzio',
    `  linux ${grubWord(e.kernel)} ${grubArgs(e.cmdline)}`,
    ...(e.initrd ? [`  initrd ${grubWord(e.initrd)}`] : []),
    '}',
    '',
  ].join('\n');
}

/**
 * The kernel command line: the root (UUID=<ext4 UUID>, or the device an initramfs maps it to), consoles on screen
 * and on the architecture's serial port (serial last, so it is /dev/console).
 */
export function kernelCmdline(root: string, extra?: string, arch: GuestArch = 'amd64'): string {
  const serial = `console=${ARCH[arch].serialConsole},115200n8`;
  return [`root=${root}`, 'ro', 'console=tty0', serial, ...(extra ? [extra] : [])].join(' ');
}

/** /boot/grub/grub.cfg for either GRUB; its kernel paths are relative to the file system holding /boot. */
export function grubCfgFile(i: LoaderInput, by: string): GuestFile {
  const onBootFs = (p: string) => (i.separateBoot ? p.replace(/^\/boot\//, '/') : p);
  const file: GuestFile = {
    kind: 'file',
    path: '/boot/grub/grub.cfg',
    fs: i.separateBoot ? 'boot' : 'root',
    mode: 0o644,
    by,
  };
  if (!i.kernel) return { ...file, note: 'written once the kernel is known' };
  // The /vmlinuz links live on the root file system, which GRUB does not see when /boot is separate.
  const files = kernelFiles(i.kernel);
  const versioned = { kernelPath: files.kernel, initrdPath: files.initrd };
  const paths = i.separateBoot ? versioned : i.kernel;
  return {
    ...file,
    content: renderGrubCfg({
      title: i.title,
      kernel: onBootFs(paths.kernelPath),
      initrd: paths.initrdPath && onBootFs(paths.initrdPath),
      cmdline: i.cmdline,
      serial: (i.arch ?? 'amd64') === 'amd64',
    }),
  };
}

/** GRUB's modules for one platform, copied from the host into the guest for what grub.cfg loads at run time. */
export function grubModulesCopy(i: LoaderInput, platformDir: string, platform: string, by: string): GuestFile {
  return {
    kind: 'copy',
    path: `/boot/grub/${platform}`,
    fs: i.separateBoot ? 'boot' : 'root',
    from: platformDir,
    filter: '*.mod *.lst',
    by,
  };
}

export function earlyConfig(bootFsUuid: string, grubDir: string): string {
  return `search.fs_uuid ${bootFsUuid} root\nset prefix=($root)${grubDir}\n`;
}

export function grubMkimageArgs(
  out: string,
  earlyCfg: string,
  prefix: string,
  format: 'i386-pc' | 'x86_64-efi' | 'arm64-efi',
  modules: readonly string[],
  dir?: string,
): string[] {
  return ['-O', format, ...(dir ? ['-d', dir] : []), '-o', out, '-c', earlyCfg, '-p', prefix, ...modules];
}
