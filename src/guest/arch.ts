// The guest's architecture as planning decides it (the image config's, else --platform's, else the host's), and the
// option combinations an architecture cannot honour, refused as usage errors naming both sides.
import { ARCH, guestArch, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import type { BinfmtFacts } from '../core/binfmt.js';
import { emulationFix, emulationFor } from './binfmt.js';
import type { ConvertOptions } from '../core/options.js';
import type { GuestStrategyId, ImageFacts } from '../core/plan.js';
import { defaultPlatform, formatPlatform, parsePlatform } from '../source/index.js';

export interface ArchDecision {
  arch: GuestArch;
  /** Where it was read: the image's config, --platform (before the image is read), or the host (neither). */
  from: 'image' | 'platform' | 'host';
  /** The host's architecture (what runs the conversion; a distro build runs the image's programs on it). */
  host: string;
}

/** The guest's architecture from what is known; the host's is given by the caller (a plan is a function of data). */
export function decideArch(o: ConvertOptions, image: ImageFacts | undefined, hostArch: string): ArchDecision {
  const asked = o.platform ? parsePlatform(o.platform) : undefined;
  if (image) {
    // The sources already refuse an image of another platform; a daemon's or an archive's config is checked here too.
    if (asked && asked.architecture !== image.architecture) {
      throw new Img2vmError(
        'usage',
        `--platform ${formatPlatform(asked)} was asked for, but the image is linux/${image.architecture}`,
        `give --platform linux/${image.architecture}, or an image that has a ${asked.architecture} variant`,
      );
    }
    return { arch: guestArch(image.architecture, `the image's architecture`), from: 'image', host: hostArch };
  }
  if (asked)
    return { arch: guestArch(asked.architecture, `--platform ${o.platform}`), from: 'platform', host: hostArch };
  return { arch: guestArch(hostArch, "the host's architecture (no --platform)"), from: 'host', host: hostArch };
}

/** The host's architecture as OCI spells it. */
export function hostArch(): string {
  return defaultPlatform().architecture;
}

/**
 * The options as the architecture lets them be: --boot hybrid (the default) means every firmware the architecture
 * has, so on arm64 it is UEFI. What the architecture cannot do is refused, naming the option and the architecture.
 */
export function optionsForArch(o: ConvertOptions, a: ArchDecision): ConvertOptions {
  const name = `linux/${a.arch}`;
  const firmware = ARCH[a.arch].firmware;
  if (o.boot !== 'hybrid' && !firmware.includes(o.boot)) {
    throw new Img2vmError(
      'usage',
      `--boot ${o.boot} cannot boot a ${name} guest: ${a.arch} machines boot through ${firmware.join(' or ').toUpperCase()} only`,
      `leave --boot out (a ${a.arch} disk is UEFI-only GPT), or convert a linux/amd64 image`,
    );
  }
  if (a.arch === 'amd64') return o;
  if (o.partitionTable === 'mbr') {
    throw new Img2vmError(
      'usage',
      `--partition-table mbr cannot hold a ${name} guest: ${a.arch} disks are UEFI-only GPT`,
      'leave --partition-table out (or give gpt)',
    );
  }
  return { ...o, boot: 'uefi' };
}

/**
 * A distro build runs the image's programs during the conversion: natively when the guest's architecture is the
 * host's, else under a user-mode emulator that binfmt_misc runs them through (registered with the F flag, so the
 * build's containers find it). Without one, --init distro for a foreign image is refused, saying what to register
 * and that registering needs root. img2vm's own init runs nothing from the image and serves every architecture.
 */
export function checkStrategyArch(
  id: GuestStrategyId,
  a: ArchDecision,
  explicit: boolean,
  binfmt: BinfmtFacts | undefined,
): void {
  if (id !== 'distro' || !explicit || a.arch === a.host) return;
  const e = emulationFor(binfmt, a.arch);
  if (e.ok) return;
  throw new Img2vmError(
    'toolMissing',
    `--init distro runs the image's linux/${a.arch} programs to install its kernel, and this host is linux/${a.host}: ${e.why}`,
    `${emulationFix(a.arch)}; or give --init img2vm (img2vm's own kernel and init run nothing from the image)`,
  );
}

/**
 * Whether --init auto may choose the distro strategy for this architecture: only natively. A foreign image's
 * distro build would run every package script under emulation (many minutes; see the README), while img2vm's own
 * init converts it in seconds with nothing emulated, so a slow emulated build is done only when asked for.
 */
export function distroPossible(a: ArchDecision): boolean {
  return a.arch === a.host;
}
