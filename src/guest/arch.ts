// The guest's architecture as planning decides it (the image config's, else --platform's, else the host's), and the
// option combinations an architecture cannot honour, refused as usage errors naming both sides.
import { ARCH, guestArch, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
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
 * Strategies that run the image's programs during the conversion (distro builds) need the guest's architecture on
 * the host; img2vm's own init runs nothing, so it serves every architecture. --init auto picks it for a foreign image.
 */
export function checkStrategyArch(id: GuestStrategyId, a: ArchDecision, explicit: boolean): void {
  if (id !== 'distro' || !explicit) return;
  if (a.arch === a.host && a.arch === 'amd64') return;
  throw new Img2vmError(
    'usage',
    a.arch === a.host
      ? `--init distro installs amd64 distribution packages only, and the image is linux/${a.arch}`
      : `--init distro runs the image's linux/${a.arch} programs to install its kernel, and this host is linux/${a.host} (they would need qemu-user-static registered with binfmt_misc, which img2vm does not use yet)`,
    "give --init img2vm: img2vm's own kernel and init run nothing from the image during the conversion",
  );
}

/** Whether --init auto may choose the distro strategy for this architecture (it runs the image's programs). */
export function distroPossible(a: ArchDecision): boolean {
  return a.arch === 'amd64' && a.host === 'amd64';
}
