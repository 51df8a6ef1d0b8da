// Whether the host's kernel runs another architecture's programs (binfmt_misc with a user-mode emulator), as pure
// functions of /proc/sys/fs/binfmt_misc's contents, which the caller reads (src/tools/binfmt.ts).
import { ARCH, type GuestArch } from '../core/arch.js';
import type { BinfmtFacts, BinfmtHandler } from '../core/binfmt.js';

export type { BinfmtFacts, BinfmtHandler };

/** The raw files: `status`, and every other file but `register` by name. */
export interface BinfmtFiles {
  status?: string;
  entries: Record<string, string>;
}

export function parseBinfmtEntry(name: string, text: string): BinfmtHandler {
  const lines = text.split('\n').map((l) => l.trim());
  const field = (key: string) => lines.find((l) => l.startsWith(`${key} `) || l.startsWith(`${key}:`));
  const value = (key: string) =>
    field(key)
      ?.slice(key.length + 1)
      .trim();
  const offset = Number.parseInt(value('offset') ?? '0', 10);
  return {
    name,
    enabled: lines[0] === 'enabled',
    interpreter: value('interpreter') ?? '',
    flags: value('flags') ?? '',
    offset: Number.isNaN(offset) ? 0 : offset,
    magic: value('magic') ?? null,
    mask: value('mask') ?? null,
  };
}

export function parseBinfmt(files: BinfmtFiles): BinfmtFacts {
  return {
    mounted: files.status !== undefined,
    enabled: files.status?.trim() === 'enabled',
    handlers: Object.entries(files.entries)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, text]) => parseBinfmtEntry(name, text)),
  };
}

/** The first 20 bytes of a 64-bit little-endian ELF executable (ET_EXEC) or PIE (ET_DYN) for this architecture. */
function elfHeads(arch: GuestArch): Buffer[] {
  return [2, 3].map((type) => {
    const b = Buffer.alloc(20);
    b.write('7f454c46020101', 'hex');
    b.writeUInt16LE(type, 16);
    b.writeUInt16LE(ARCH[arch].elfMachine, 18);
    return b;
  });
}

/** Whether a magic-number handler claims this architecture's programs (its magic, under its mask, at its offset). */
export function handlesArch(h: BinfmtHandler, arch: GuestArch): boolean {
  if (!h.magic || !/^([0-9a-f]{2})+$/i.test(h.magic)) return false;
  const magic = Buffer.from(h.magic, 'hex');
  const mask =
    h.mask && /^([0-9a-f]{2})+$/i.test(h.mask) ? Buffer.from(h.mask, 'hex') : Buffer.alloc(magic.length, 0xff);
  if (h.offset + magic.length > 20) return false;
  return elfHeads(arch).every((head) => magic.every((m, i) => ((head[h.offset + i]! ^ m) & (mask[i] ?? 0xff)) === 0));
}

export type Emulation = { ok: true; handler: BinfmtHandler } | { ok: false; why: string };

/**
 * Whether containers on this host run `arch`'s programs: an enabled handler for them with the F flag (without it
 * the kernel looks for the interpreter's path inside the container's root, where it is not).
 */
export function emulationFor(facts: BinfmtFacts | undefined, arch: GuestArch): Emulation {
  const name = `qemu-${ARCH[arch].uname}`;
  if (!facts || !facts.mounted) return { ok: false, why: 'binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc' };
  if (!facts.enabled) return { ok: false, why: 'binfmt_misc is disabled (/proc/sys/fs/binfmt_misc/status)' };
  const claiming = facts.handlers.filter((h) => handlesArch(h, arch));
  const usable = claiming.find((h) => h.enabled && h.flags.includes('F'));
  if (usable) return { ok: true, handler: usable };
  const disabled = claiming.find((h) => !h.enabled);
  if (disabled) return { ok: false, why: `the binfmt_misc handler ${disabled.name} for ${arch} programs is disabled` };
  const noF = claiming.find((h) => h.enabled);
  if (noF)
    return {
      ok: false,
      why: `the binfmt_misc handler ${noF.name} (${noF.interpreter}) is registered without the F (fix-binary) flag, so containers cannot find its interpreter`,
    };
  return { ok: false, why: `no binfmt_misc handler runs ${arch} programs (${name} is not registered)` };
}

/** How to make emulationFor(…, arch) true: what to run, as root, since registering changes the running kernel. */
export function emulationFix(arch: GuestArch): string {
  const name = `qemu-${ARCH[arch].uname}`;
  const script = arch === 'arm64' ? 'scripts/register-binfmt.sh or ' : '';
  return `as root (registering changes the running kernel): apt-get install qemu-user-static, then ${script}update-binfmts --enable ${name}`;
}
