// Which distributions img2vm can make bootable, and the values their templates take.
import { Img2vmError } from '../core/errors.js';
import type { OsRelease } from './detect.js';

export interface DistroRecipe {
  /** The template directory under templates/. */
  template: string;
  /** Values for the template's placeholders (besides {{base}}). */
  values: Record<string, string>;
  label: string;
}

const SUPPORTED = 'Debian 12 (bookworm) and 13 (trixie), and Debian testing/sid';

export function supportedDistros(): string {
  return SUPPORTED;
}

/** Picks the recipe for an image's os-release, or explains what is supported. */
export function recipeFor(os: OsRelease | undefined, arch: string | undefined): DistroRecipe {
  if (arch && arch !== 'amd64') {
    throw new Img2vmError('unsupportedDistro', `image architecture ${arch} is not supported`, 'img2vm builds x86-64 (amd64) guests; pick --platform linux/amd64');
  }
  if (!os) {
    throw new Img2vmError(
      'unsupportedDistro',
      'the image has no /etc/os-release, so it has no distribution img2vm can install a kernel into',
      `supported: ${SUPPORTED}; an image that already has a kernel and init can be converted with --raw`,
    );
  }
  if (os.id === 'debian') {
    const major = Number.parseInt(os.versionId ?? '', 10);
    if (!Number.isNaN(major) && major < 12) {
      throw new Img2vmError('unsupportedDistro', `Debian ${os.versionId} is too old`, `supported: ${SUPPORTED}`);
    }
    return {
      template: 'debian',
      label: os.prettyName ?? `Debian ${os.versionId ?? os.versionCodename ?? ''}`.trim(),
      values: { kernel_package: 'linux-image-cloud-amd64', extra_packages: '' },
    };
  }
  throw new Img2vmError(
    'unsupportedDistro',
    `distribution "${os.prettyName ?? os.id}" is not supported`,
    `supported: ${SUPPORTED}; use --raw if the image already has a kernel and init`,
  );
}
