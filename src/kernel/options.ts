// Options of getKernel: where the cache and the archive are, how fresh an answer must be, and test hooks.
import type { OpenSourceOptions } from '../source/index.js';
import type { DockerClient } from '../source/docker-api.js';

export interface KernelOptions {
  /** img2vm's cache root (default cacheDir()); kernels live in its kernels/ directory. */
  cacheDir?: string;
  /** Debian mirror or apt proxy URL (--kernel-mirror); default https://deb.debian.org/debian. */
  mirror?: string;
  /** The security archive; default beside the mirror (…/debian-security); null: do not use one (--kernel-no-security). */
  securityMirror?: string | null;
  /** OpenPGP keyring the archive must be signed with (binary format); default Debian's archive keyring. */
  keyring?: string;
  /** Architecture of the kernel package (default amd64). */
  arch?: string;
  /** How long a resolved suite is trusted without asking the archive again (default 24 h). */
  maxAgeMs?: number;
  /** Ask the archive even when the cached answer is fresh. */
  refresh?: boolean;
  /**
   * An archive kernel that is not cached is only resolved (the signed index names its package's SHA-256, its id):
   * the bundle comes back with peeked set and no files, and nothing is downloaded.
   */
  peek?: boolean;
  /** Never use the network: the cached kernel of the suite, else an error. */
  offline?: boolean;
  /** Accept Release files past their Valid-Until (archive snapshots); off by default, as in apt. */
  allowExpired?: boolean;
  /** The clock, for tests. */
  now?: () => Date;
  /** Bytes of the kernel package downloaded so far, and its size. */
  onProgress?: (done: number, total: number) => void;
  http?: { tries?: number; backoffMs?: number; idleTimeoutMs?: number };
  /** For kernels in container images. */
  docker?: DockerClient;
  source?: OpenSourceOptions;
}

/** What a conversion's options decide about the archive fetch (the rest is the caller's). */
export function archiveOptions(o: {
  kernelMirror?: string;
  kernelNoSecurity?: boolean;
}): Pick<KernelOptions, 'mirror' | 'securityMirror'> {
  return o.kernelNoSecurity ? { mirror: o.kernelMirror, securityMirror: null } : { mirror: o.kernelMirror };
}
