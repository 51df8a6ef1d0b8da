// The converted disk's key fields as a conversion knows them once its guest stage ran: the image, the kernel, the
// init and the boot loaders by digest, the byte-changing options (store/disk-key.ts lists them and hashes them).
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BOOT_LOADERS } from './boot/index.js';
import type { ConvertOptions } from './core/options.js';
import type { ConversionPlan } from './core/plan.js';
import { nativeInitPath } from './guest/initramfs.js';
import type { Bootable } from './guest/strategy.js';
import type { SourceImage } from './source/image.js';
import { diskKeyOptions, hashPaths, type DiskKeyFields } from './store/index.js';

let code: Promise<string> | undefined;

/** img2vm's own code (the compiled dist/, or src/ under the tests), hashed once per process. */
export function codeDigest(): Promise<string> {
  return (code ??= hashPaths([dirname(fileURLToPath(import.meta.url))], { only: /\.(js|ts|json)$/ }));
}

export interface KeyContext {
  /** img2vm's package version. */
  version: string;
  /** The --ssh-key file's text as the conversion read it. */
  sshKeyText?: string;
  /** SOURCE_DATE_EPOCH as the run honours it, null when unset. */
  sourceDateEpoch: number | null;
}

/** The image's platform as its config names it (os/arch[/variant]). */
export function imagePlatform(image: SourceImage): string {
  const c = image.config as { os?: string; architecture?: string; variant?: string };
  return [c.os ?? 'linux', c.architecture ?? 'amd64', ...(c.variant ? [c.variant] : [])].join('/');
}

/**
 * Every field that decides the disk's bytes, for a conversion whose guest stage made `made` from `image` under
 * `plan` (the plan's phase after the image: strategy, loaders, output format and hostname are settled there).
 */
export async function diskKeyFields(
  plan: ConversionPlan,
  o: ConvertOptions,
  image: SourceImage,
  made: Bootable,
  ctx: KeyContext,
): Promise<DiskKeyFields> {
  const loaders: Record<string, string> = {};
  for (const id of plan.boot.loaders) loaders[id] = await hashPaths(BOOT_LOADERS[id].hostFiles());
  return {
    img2vm: { version: ctx.version, code: await codeDigest() },
    image: { config: image.id, manifest: image.manifestDigest ?? null, platform: imagePlatform(image) },
    guest: { strategy: plan.guest.strategy, build: made.build ? made.image.id : null },
    kernel: made.kernel?.id ?? null,
    init: plan.guest.strategy === 'img2vm' ? await hashPaths([nativeInitPath()]) : null,
    loaders,
    options: diskKeyOptions(o, {
      format: plan.output.format,
      hostname: plan.hostname,
      ...(ctx.sshKeyText !== undefined ? { sshKeyText: ctx.sshKeyText } : {}),
      sourceDateEpoch: ctx.sourceDateEpoch,
    }),
  };
}
