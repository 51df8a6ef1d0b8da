// The validated options of a conversion; the CLI and --config files both end up here.
import { z } from 'zod';

export const BOOT_MODES = ['bios', 'uefi', 'hybrid'] as const;
export const BUILDERS = ['auto', 'docker'] as const;
export const BOOTLOADERS = ['grub', 'systemd-boot'] as const;

const hostname = z
  .string()
  .regex(/^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/, 'a hostname is 1-63 letters, digits and inner hyphens');

export const ConvertOptionsSchema = z.object({
  image: z.string().min(1, 'the image reference is empty'),
  /** Optional only for a containerDisk that is pushed (--push) and not kept as a file. */
  output: z.string().min(1, 'the output path is empty').optional(),
  format: z.string().optional(),
  /** Disk size in bytes; default: fitted to the content plus headroom. */
  size: z.number().int().positive().optional(),
  boot: z.enum(BOOT_MODES).default('hybrid'),
  /** The UEFI boot loader; systemd-boot only for --boot uefi (a BIOS boot needs GRUB). */
  bootloader: z.enum(BOOTLOADERS).default('grub'),
  /** Partition table; default: MBR for --boot bios, GPT otherwise. */
  partitionTable: z.enum(['mbr', 'gpt']).optional(),
  /** Size of a separate ext4 /boot partition in bytes; none by default. */
  bootPartition: z.number().int().positive().optional(),
  password: z.string().min(1, 'the password is empty').optional(),
  hostname: hostname.optional(),
  builder: z.enum(BUILDERS).default('auto'),
  raw: z.boolean().default(false),
  seed: z.string().optional(),
  kernelCmdline: z.string().optional(),
  compress: z.boolean().default(false),
  /** docker's --pull: always | missing | never. */
  pull: z.enum(['always', 'missing', 'never']).default('missing'),
  /** OS/ARCH[/VARIANT] of a multi-platform image; default: the host's. */
  platform: z.string().optional(),
  /** Registries (host[:port]) reached over plain HTTP; loopback registries always are. */
  insecureRegistries: z.array(z.string()).default([]),
  /** With --format containerdisk: also push the image to this registry reference (REGISTRY/REPO:TAG). */
  push: z.string().min(1, 'the --push reference is empty').optional(),
});

export type ConvertOptionsInput = z.input<typeof ConvertOptionsSchema>;
export type ConvertOptions = z.output<typeof ConvertOptionsSchema>;

/** A hostname from the image name: "ghcr.io/acme/web-app:1.2" → "web-app". */
export function hostnameFromImage(ref: string): string {
  const noTransport = ref.replace(/^(docker-daemon|docker-archive|docker|oci|oci-archive):(\/\/)?/, '');
  const last = noTransport.replace(/@.*$/, '').replace(/:[^/]*$/, '').split('/').pop() ?? '';
  const h = last.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return h || 'img2vm';
}
