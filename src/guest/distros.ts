// Which distributions img2vm can make bootable, how each is set up, and the values their templates take.
import { GUEST_ARCHES, isGuestArch, type GuestArch } from '../core/arch.js';
import { Img2vmError } from '../core/errors.js';
import type { OsRelease } from './detect.js';
import { type DistroInfo, debianInfo, ubuntuInfo, alpineInfo, fedoraInfo, enterpriseInfo } from './config/families.js';

export type { Family, DistroInfo } from './config/families.js';

export interface DistroRecipe {
  /** The template directory under templates/. */
  template: string;
  /** Values for the template's placeholders (besides {{base}}), with no optional feature selected. */
  values: Record<string, string>;
  label: string;
  distro: DistroInfo;
  /** Said to the user, e.g. when a derivative is treated as the distribution it is built on. */
  warnings: string[];
}

const SUPPORTED =
  'Debian 11, 12, 13 and testing/sid; Ubuntu 20.04 and newer; Alpine 3.18 and newer; Fedora 39 and newer; ' +
  'CentOS Stream 9 and 10; Rocky Linux and AlmaLinux 8, 9 and 10';
const OTHER_WAYS =
  "--init img2vm boots any image with img2vm's own kernel and init; --init image (--raw) boots an image that brings its own kernel and init";

function unsupported(message: string): Img2vmError {
  return new Img2vmError(
    'unsupportedDistro',
    `${message}; img2vm installs a kernel and init into: ${SUPPORTED}`,
    OTHER_WAYS,
  );
}

const DEBIAN_CODENAMES: Record<string, number> = {
  buster: 10,
  bullseye: 11,
  bookworm: 12,
  trixie: 13,
  forky: 14,
  duke: 15,
};
const UBUNTU_CODENAMES: Record<string, string> = {
  focal: '20.04',
  jammy: '22.04',
  kinetic: '22.10',
  lunar: '23.04',
  mantic: '23.10',
  noble: '24.04',
  oracular: '24.10',
  plucky: '25.04',
  questing: '25.10',
};

function major(v: string | undefined): number {
  const n = Number.parseInt(v ?? '', 10);
  return Number.isNaN(n) ? NaN : n;
}

/** "24.04" → 2404, so releases compare as numbers; NaN when the string is not YY.MM. */
function ubuntuNumber(v: string | undefined): number {
  const m = /^(\d{2})\.(\d{2})/.exec(v ?? '');
  return m ? Number(m[1]) * 100 + Number(m[2]) : NaN;
}

function debian(os: OsRelease, name: string, arch: GuestArch): DistroInfo {
  const fromId = major(os.versionId);
  // testing and sid have no VERSION_ID; their codename is the next release's.
  const version = Number.isNaN(fromId) ? 'testing' : String(fromId);
  const n = Number.isNaN(fromId) ? Infinity : fromId;
  if (n < 11) throw unsupported(`${name} ${os.versionId} is too old (its archive has moved to archive.debian.org)`);
  return debianInfo(version, n, arch);
}

function ubuntu(versionId: string | undefined, name: string, arch: GuestArch): DistroInfo {
  const n = ubuntuNumber(versionId);
  if (Number.isNaN(n))
    throw unsupported(`${name} has no Ubuntu release number in its os-release (VERSION_ID "${versionId ?? ''}")`);
  if (n < 2004) throw unsupported(`${name} ${versionId} is too old`);
  return ubuntuInfo(versionId!.slice(0, 5), n, arch);
}

function alpine(os: OsRelease, arch: GuestArch): DistroInfo {
  // VERSION_ID is 3.20.3, or 3.21_alpha20240923 on edge.
  const m = /^(\d+)\.(\d+)/.exec(os.versionId ?? '');
  if (!m) throw unsupported(`Alpine with VERSION_ID "${os.versionId ?? ''}" is not a release img2vm knows`);
  const n = Number(m[1]) * 100 + Number(m[2]);
  if (n < 318) throw unsupported(`Alpine ${os.versionId} is too old`);
  const edge = /_alpha|_beta|edge/.test(`${os.versionId} ${os.prettyName ?? ''}`);
  return alpineInfo(edge ? 'edge' : `${m[1]}.${m[2]}`, arch);
}

function enterprise(
  os: OsRelease,
  id: 'centos' | 'rocky' | 'almalinux' | 'ol',
  label: string,
  arch: GuestArch,
): DistroInfo {
  const n = major(os.versionId);
  const min = id === 'centos' ? 9 : 8;
  if (Number.isNaN(n) || n < min || n > 10) {
    throw unsupported(
      `${os.prettyName ?? `${label} ${os.versionId ?? ''}`} is not supported${id === 'centos' && n === 8 ? ' (CentOS Stream 8 reached its end of life and its repositories are archived)' : ''}`.replace(
        / +/g,
        ' ',
      ),
    );
  }
  return enterpriseInfo(id, String(n), arch);
}

/** Picks the recipe for an image's os-release, or explains what is supported and what else works. */
export function recipeFor(os: OsRelease | undefined, arch = 'amd64'): DistroRecipe {
  if (!isGuestArch(arch)) {
    throw new Img2vmError(
      'unsupportedDistro',
      `image architecture ${arch} is not supported`,
      `img2vm makes ${GUEST_ARCHES.join(' and ')} guests; pick one with --platform`,
    );
  }
  if (!os) {
    throw new Img2vmError(
      'unsupportedDistro',
      `the image has no /etc/os-release, so it has no distribution img2vm can install a kernel into (it installs one into: ${SUPPORTED})`,
      OTHER_WAYS,
    );
  }
  const name = os.prettyName ?? os.id;
  const warnings: string[] = [];
  let info: DistroInfo;
  switch (os.id) {
    case 'debian':
      info = debian(os, 'Debian', arch);
      break;
    case 'ubuntu':
      info = ubuntu(os.versionId, 'Ubuntu', arch);
      break;
    case 'alpine':
      info = alpine(os, arch);
      break;
    case 'fedora': {
      const n = major(os.versionId);
      // Rawhide's VERSION_ID is its future release number, so it passes like any new release.
      if (Number.isNaN(n) || n < 39)
        throw unsupported(`Fedora ${os.versionId ?? ''} is too old (its repositories are archived)`);
      info = fedoraInfo(String(n), arch);
      break;
    }
    case 'centos':
      info = enterprise(os, 'centos', 'CentOS Stream', arch);
      break;
    case 'rocky':
      info = enterprise(os, 'rocky', 'Rocky Linux', arch);
      break;
    case 'almalinux':
      info = enterprise(os, 'almalinux', 'AlmaLinux', arch);
      break;
    case 'rhel':
      // UBI's repositories carry no kernel; RHEL proper needs a subscription inside the build.
      throw unsupported(`${name}: Red Hat Enterprise Linux images cannot install a kernel without a subscription`);
    case 'devuan':
      throw unsupported(`${name}: Devuan does not use systemd, which img2vm's Debian recipe installs`);
    default:
      info = derivative(os, name, warnings, arch);
  }
  if (!info.arches.includes(arch)) {
    throw new Img2vmError(
      'unsupportedDistro',
      `img2vm's ${info.template} template installs a kernel into ${info.arches.join(' and ')} guests only, and ${name} here is linux/${arch}`,
      `${OTHER_WAYS}; or give the image's ${info.arches.join('/')} variant with --platform`,
    );
  }
  // PRETTY_NAME is image content that ends up in boot menus: printable and short.
  const pretty = os.prettyName
    ?.replace(/[\x00-\x1f\x7f]/g, '')
    .slice(0, 80)
    .trim();
  return { template: info.template, label: pretty || info.label, values: info.values, distro: info, warnings };
}

/**
 * An unknown distribution built on a supported one is accepted, with a warning, only when its os-release
 * names a parent release img2vm knows (the package names and versions are then the parent's); otherwise
 * it is refused, because guessing package names for an unknown archive fails late, inside the build.
 */
function derivative(os: OsRelease, name: string, warnings: string[], arch: GuestArch): DistroInfo {
  const like = new Set(os.idLike);
  if (like.has('ubuntu') && os.ubuntuCodename) {
    const v = UBUNTU_CODENAMES[os.ubuntuCodename];
    if (!v) throw unsupported(`${name} is built on Ubuntu "${os.ubuntuCodename}", a release img2vm does not know`);
    warnings.push(`${name} is not supported as such; treating it as Ubuntu ${v}, the release it is built on`);
    return ubuntu(v, name, arch);
  }
  if (like.has('debian') && os.versionCodename && os.versionCodename in DEBIAN_CODENAMES) {
    const n = DEBIAN_CODENAMES[os.versionCodename]!;
    warnings.push(
      `${name} is not supported as such; treating it as Debian ${n} (${os.versionCodename}), the release it is built on`,
    );
    return debian({ ...os, versionId: String(n) }, name, arch);
  }
  if ((like.has('rhel') || like.has('centos') || like.has('fedora')) && os.id === 'ol') {
    warnings.push(
      `${name} is not supported as such; treating it as an Enterprise Linux ${major(os.versionId)} rebuild`,
    );
    return enterprise(os, 'ol', name, arch);
  }
  if (like.has('debian') || like.has('ubuntu') || like.has('fedora') || like.has('rhel') || like.has('alpine')) {
    throw unsupported(
      `${name} is derived from ${os.idLike.join('/')} but names no release of it img2vm knows, so its package names cannot be trusted`,
    );
  }
  throw unsupported(`distribution "${name}" is not supported`);
}

/** Whether img2vm has a template for this distribution on this architecture (for --init auto's choice). */
export function hasTemplate(os: OsRelease, arch = 'amd64'): boolean {
  try {
    recipeFor(os, arch);
    return true;
  } catch {
    return false;
  }
}
