// The converted disk's key: a hex SHA-256 over a canonical JSON of every field that decides the disk's bytes.
//
// The fields (DiskKeyFields), each changing the key:
//   img2vm.version   img2vm's package version
//   img2vm.code      a SHA-256 over img2vm's own code files (dist/ or src/), so a changed writer never reuses a disk
//   image.config     the image config's digest (the image's identity: its layers' diff ids are in it)
//   image.manifest   the manifest digest when the source has one (registry, OCI layout), else null
//   image.platform   os/arch[/variant] of the image that was converted
//   guest.strategy   distro | img2vm | image
//   guest.build      distro: the id of the guest image the template build made; else null
//   kernel           img2vm's kernel: its content id (sha256 of the .deb, or of the kernel and its modules); else null
//   init             img2vm's init binary (native/init): its SHA-256; else null
//   loaders          each boot loader the disk gets, by id, with the SHA-256 of the host files it is made from
//   options          the options that change bytes (DiskKeyOptions): format, compress, size, boot, bootloader,
//                    partitionTable, bootPartition, kernelCmdline, hostname (as resolved), user, dns, cloudInit,
//                    entrypointService, sshKey (SHA-256 of the key's text), password (scrypt of it, never the
//                    password), seed, sourceDateEpoch
// Options that do not change bytes are left out on purpose: the output path, --pull, --insecure-registry, --push,
// --config, --builder (the build's own id stands for it), --kernel, --kernel-mirror and --kernel-no-security (the
// kernel's digest stands for them), --platform (the image's own platform does), --json, --quiet, --verbose.
import { createHash, scryptSync } from 'node:crypto';
import { z } from 'zod';
import type { ConvertOptions } from '../core/options.js';
import type { GuestStrategyId } from '../core/plan.js';

const hex = z.string().regex(/^[0-9a-f]{64}$/);
const nullable = <T extends z.ZodType>(t: T) => t.nullable();

export const DiskKeyOptionsSchema = z
  .object({
    format: z.string(),
    compress: z.boolean(),
    size: nullable(z.number()),
    boot: z.string(),
    bootloader: z.string(),
    partitionTable: nullable(z.string()),
    bootPartition: nullable(z.number()),
    kernelCmdline: nullable(z.string()),
    hostname: z.string(),
    user: nullable(z.string()),
    dns: nullable(z.array(z.string())),
    cloudInit: z.boolean(),
    entrypointService: z.boolean(),
    /** SHA-256 of the authorized key's text, or null. */
    sshKey: nullable(hex),
    /** A slow hash of the root password (scrypt), or null: the key is public (a registry tag), the password is not. */
    password: nullable(hex),
    seed: nullable(z.string()),
    /** SOURCE_DATE_EPOCH, or null when timestamps are the time of the run. */
    sourceDateEpoch: nullable(z.number()),
  })
  .strict();

export const DiskKeyFieldsSchema = z
  .object({
    img2vm: z.object({ version: z.string(), code: hex }).strict(),
    image: z.object({ config: z.string(), manifest: nullable(z.string()), platform: z.string() }).strict(),
    guest: z.object({ strategy: z.enum(['distro', 'img2vm', 'image']), build: nullable(z.string()) }).strict(),
    kernel: nullable(z.string()),
    init: nullable(hex),
    loaders: z.record(z.string(), hex),
    options: DiskKeyOptionsSchema,
  })
  .strict();

export type DiskKeyOptions = z.infer<typeof DiskKeyOptionsSchema>;
export type DiskKeyFields = z.infer<typeof DiskKeyFieldsSchema> & { guest: { strategy: GuestStrategyId } };

/** JSON with object keys sorted at every depth and no whitespace: the same fields always give the same text. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') {
    if (v === undefined) throw new Error('canonical JSON has no undefined: use null');
    if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`canonical JSON has no ${v}`);
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

/** The versioned text the key hashes: a change of the fields' shape is a change of this prefix. */
const KEY_SCHEMA = 'img2vm-disk-key/1';

export function diskKey(fields: DiskKeyFields): string {
  return createHash('sha256')
    .update(`${KEY_SCHEMA}\n${canonicalJson(fields)}`)
    .digest('hex');
}

/** The password enters the key only as scrypt of it, salted with img2vm's own string (the key is published). */
export function passwordDigest(password: string): string {
  return scryptSync(password, 'img2vm disk key password', 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 << 20 }).toString(
    'hex',
  );
}

export function sha256Hex(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The byte-changing options, from the parsed options and what planning resolved of them (the output format, the
 * hostname the image name gave, the SSH key's text). Everything absent is null, so an absent option is a value too.
 */
export function diskKeyOptions(
  o: ConvertOptions,
  resolved: { format: string; hostname: string; sshKeyText?: string; sourceDateEpoch: number | null },
): DiskKeyOptions {
  return {
    format: resolved.format,
    compress: o.compress,
    size: o.size ?? null,
    boot: o.boot,
    bootloader: o.bootloader,
    partitionTable: o.partitionTable ?? null,
    bootPartition: o.bootPartition ?? null,
    kernelCmdline: o.kernelCmdline ?? null,
    hostname: resolved.hostname,
    user: o.user ?? null,
    dns: o.dns ?? null,
    cloudInit: o.cloudInit,
    entrypointService: o.entrypointService,
    sshKey: resolved.sshKeyText === undefined ? null : sha256Hex(resolved.sshKeyText),
    password: o.password === undefined ? null : passwordDigest(o.password),
    seed: o.seed ?? null,
    sourceDateEpoch: resolved.sourceDateEpoch,
  };
}

/** The fields as OCI annotations (the password's digest left out: a tag says enough), for people and `oras`. */
export function keyAnnotations(fields: DiskKeyFields, key: string): Record<string, string> {
  const p = 'org.img2vm.disk';
  const o = { ...fields.options, password: fields.options.password === null ? null : 'set' };
  return {
    [`${p}.key`]: key,
    [`${p}.img2vm`]: `${fields.img2vm.version} ${fields.img2vm.code}`,
    [`${p}.image.config`]: fields.image.config,
    [`${p}.image.manifest`]: fields.image.manifest ?? '',
    [`${p}.image.platform`]: fields.image.platform,
    [`${p}.guest`]: `${fields.guest.strategy}${fields.guest.build ? ` ${fields.guest.build}` : ''}`,
    [`${p}.kernel`]: fields.kernel ?? '',
    [`${p}.init`]: fields.init ?? '',
    [`${p}.loaders`]: canonicalJson(fields.loaders),
    [`${p}.options`]: canonicalJson(o),
  };
}
