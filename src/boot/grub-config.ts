// The grub.cfg img2vm writes (shared by the BIOS and EFI GRUB installs): one entry, serial and screen console.
export interface GrubEntry {
  title: string;
  /** Paths as GRUB sees them on the root file system. */
  kernel: string;
  initrd?: string;
  cmdline: string;
}

export function renderGrubCfg(e: GrubEntry): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '# Written by img2vm. The kernel and initrd paths follow Debian\'s /vmlinuz and /initrd.img links when present,',
    '# so kernel upgrades inside the guest keep booting.',
    'serial --unit=0 --speed=115200',
    'terminal_input serial console',
    'terminal_output serial console',
    'set timeout=0',
    'set timeout_style=hidden',
    `menuentry ${q(e.title)} {`,
    '  insmod gzio',
    `  linux ${e.kernel} ${e.cmdline}`,
    ...(e.initrd ? [`  initrd ${e.initrd}`] : []),
    '}',
    '',
  ].join('\n');
}

/** The kernel command line: root by UUID, consoles on screen and serial (serial last, so it is /dev/console). */
export function kernelCmdline(rootUuid: string, extra?: string): string {
  return [`root=UUID=${rootUuid}`, 'ro', 'console=tty0', 'console=ttyS0,115200n8', ...(extra ? [extra] : [])].join(' ');
}
