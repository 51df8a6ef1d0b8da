// Platforms (os/arch/variant): parsing --platform, the host's default, and choosing one manifest of a multi-platform index.
import { Img2vmError } from '../core/errors.js';
import type { Descriptor } from './manifest.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, Platform['architecture'] | [string, string]> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  aarch64: 'arm64',
  armhf: ['arm', 'v7'],
  armel: ['arm', 'v6'],
  i386: '386',
  i686: '386',
};

/** Node's process.arch spelled as OCI spells architectures. */
export function defaultPlatform(arch: string = process.arch): Platform {
  const map: Record<string, Platform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
  };
  return map[arch] ?? { os: 'linux', architecture: arch };
}

/** os/arch[/variant], lower case, with the usual aliases (x86_64, aarch64, armhf) folded in. */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().toLowerCase().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new Img2vmError(
      'usage',
      `--platform "${s}" is not os/arch[/variant]`,
      'e.g. --platform linux/amd64 or linux/arm64/v8',
    );
  }
  const [os, arch, variant] = parts as [string, string, string | undefined];
  const alias = ARCH_ALIASES[arch];
  if (Array.isArray(alias)) return { os, architecture: alias[0], variant: variant ?? alias[1] };
  return { os, architecture: alias ?? arch, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: { os: string; architecture: string; variant?: string | undefined }): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** arm64 means v8 and arm means v7 when no variant is given, as containerd compares them. */
function variantOf(p: { architecture: string; variant?: string | undefined | null }): string | undefined {
  if (p.variant) return p.variant;
  if (p.architecture === 'arm64') return 'v8';
  if (p.architecture === 'arm') return 'v7';
  return undefined;
}

export function platformMatches(
  have: { os?: string | undefined; architecture?: string | undefined; variant?: string | undefined | null },
  want: Platform,
): boolean {
  if (have.os !== want.os || have.architecture !== want.architecture) return false;
  if (!want.variant) return true;
  return variantOf({ architecture: have.architecture, variant: have.variant }) === variantOf(want);
}

/** Picks want's manifest from an index; entries without a platform (attestations have unknown/unknown) never match. */
export function selectPlatform(manifests: Descriptor[], want: Platform, what: string): Descriptor {
  const candidates = manifests.filter((d) => d.platform && platformMatches(d.platform, want));
  if (candidates.length) {
    // Without a wanted variant, prefer the default variant (arm64 → v8) over others.
    const dflt = candidates.find((d) => variantOf(d.platform!) === variantOf(want));
    return dflt ?? candidates[0]!;
  }
  const have = [
    ...new Set(
      manifests.filter((d) => d.platform && d.platform.os !== 'unknown').map((d) => formatPlatform(d.platform!)),
    ),
  ];
  throw new Img2vmError(
    'imageNotFound',
    `${what} has no image for ${formatPlatform(want)}`,
    have.length ? `it has: ${have.join(', ')}; choose one with --platform` : 'it lists no platforms',
  );
}
