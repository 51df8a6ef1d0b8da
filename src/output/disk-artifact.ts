// A finished disk as an OCI artifact in a registry: pushed (--push of a plain disk, --cache-to tagged by its key)
// and pulled back (--cache-from), every blob verified by digest, the disk by the SHA-256 its record names.
//
// manifest  application/vnd.oci.image.manifest.v1+json, artifactType application/vnd.img2vm.disk.v1, annotations
//           with the key's fields (org.img2vm.disk.*) and org.opencontainers.image.created
// config    application/vnd.img2vm.disk.config.v1+json: the disk's record (key, fields, bytes, SHA-256, plan)
// layer     application/vnd.img2vm.disk.layer.v1.<format>: the disk file as written, titled disk.<format> (oras pull
//           saves it under that name)
import { rm } from 'node:fs/promises';
import { z } from 'zod';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { BlobCache } from '../source/blob-cache.js';
import { MAX_JSON, sha256 } from '../source/digest.js';
import { makeClient } from '../source/pull.js';
import { pushOciImage, type PushOptions } from '../source/push.js';
import { canonicalReference, parseDockerReference, type DockerReference } from '../source/reference.js';
import { RegistryError } from '../source/registry.js';
import { defaultPlatform } from '../source/platform.js';
import {
  canonicalJson,
  copyDisk,
  keyAnnotations,
  openStore,
  parseDiskRecord,
  type DiskRecord,
} from '../store/index.js';

export const DISK_ARTIFACT_TYPE = 'application/vnd.img2vm.disk.v1';
export const DISK_CONFIG_TYPE = 'application/vnd.img2vm.disk.config.v1+json';
export const DISK_LAYER_PREFIX = 'application/vnd.img2vm.disk.layer.v1.';
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';

const DescriptorSchema = z.object({
  mediaType: z.string(),
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
});
const ArtifactSchema = z.object({
  schemaVersion: z.literal(2),
  artifactType: z.literal(DISK_ARTIFACT_TYPE),
  config: DescriptorSchema.extend({ mediaType: z.literal(DISK_CONFIG_TYPE) }),
  layers: z.array(DescriptorSchema).length(1),
});

/** The manifest and the config of a disk's artifact (pure: the tests read them as data). */
export function diskArtifact(
  rec: DiskRecord,
  epoch: number,
): { config: Buffer; manifest: Buffer; layer: { mediaType: string; digest: string; size: number } } {
  const config = Buffer.from(canonicalJson(rec));
  const format = rec.fields.options.format;
  const layer = { mediaType: `${DISK_LAYER_PREFIX}${format}`, digest: `sha256:${rec.sha256}`, size: rec.bytes };
  const manifest = {
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    artifactType: DISK_ARTIFACT_TYPE,
    config: { mediaType: DISK_CONFIG_TYPE, digest: sha256(config), size: config.length },
    layers: [{ ...layer, annotations: { 'org.opencontainers.image.title': `disk.${format}` } }],
    annotations: {
      ...keyAnnotations(rec.fields, rec.key),
      'org.opencontainers.image.created': new Date(epoch * 1000).toISOString(),
    },
  };
  return { config, manifest: Buffer.from(JSON.stringify(manifest)), layer };
}

/** A cache repository (REGISTRY/REPO, the key is the tag) or a push reference (REGISTRY/REPO:TAG). */
export function cacheRepository(ref: string, flag: string): DockerReference {
  const r = parseDockerReference(ref);
  // The parser names "latest" when no tag is given: a tag is a colon after the last slash.
  const last = ref.slice(ref.lastIndexOf('/') + 1);
  if (r.digest || last.includes(':'))
    throw new Img2vmError(
      'usage',
      `${flag} ${ref}: give a repository without a tag or digest`,
      `each disk is tagged with its key there, e.g. ${flag} registry.example:5000/team/img2vm-cache`,
    );
  const { tag: _latest, ...repo } = r;
  return repo;
}

/** Pushes a disk (its file and record) under ref (a tag); returns the canonical reference and manifest digest. */
export async function pushDisk(
  file: string,
  rec: DiskRecord,
  ref: string,
  ctx: RunContext,
  epoch: number,
  opts: PushOptions = {},
): Promise<{ ref: string; digest: string }> {
  const a = diskArtifact(rec, epoch);
  return pushOciImage(
    ref,
    [
      { digest: sha256(a.config), size: a.config.length, mediaType: DISK_CONFIG_TYPE, bytes: a.config },
      { ...a.layer, path: file },
    ],
    { bytes: a.manifest, mediaType: MANIFEST_TYPE },
    ctx,
    opts,
  );
}

/** Pushes a disk to a cache repository, tagged by its key. */
export function pushDiskToCache(
  file: string,
  rec: DiskRecord,
  repo: string,
  ctx: RunContext,
  epoch: number,
  opts: PushOptions = {},
): Promise<{ ref: string; digest: string }> {
  const r = cacheRepository(repo, '--cache-to');
  return pushDisk(file, rec, `${canonicalReference({ ...r, tag: rec.key })}`, ctx, epoch, opts);
}

export interface PullDiskOptions {
  insecureRegistries: readonly string[];
  env?: NodeJS.ProcessEnv;
  registry?: { tries?: number; backoffMs?: number; timeoutMs?: number };
}

/**
 * Pulls the disk tagged `key` from a cache repository into dest: the manifest must be a disk artifact whose record
 * has that key and fields that hash to it, and whose layer is the disk the record names (digest and size checked
 * as it downloads, the SHA-256 again as it is copied out). Undefined when the repository has no such tag.
 */
export async function pullDiskFromCache(
  repo: string,
  key: string,
  dest: string,
  ctx: RunContext,
  o: PullDiskOptions,
): Promise<DiskRecord | undefined> {
  const r = cacheRepository(repo, '--cache-from');
  const name = canonicalReference({ ...r, tag: key });
  const cache = new BlobCache(openStore());
  const client = makeClient(
    { ...r, tag: key },
    {
      ctx,
      cache,
      pull: 'always',
      platform: defaultPlatform(),
      platformExplicit: false,
      insecureRegistries: o.insecureRegistries,
      ...(o.registry ? { registry: o.registry } : {}),
      ...(o.env ? { env: o.env } : {}),
    },
  );
  let got;
  try {
    got = await client.getManifest(r.path, key);
  } catch (e) {
    if (e instanceof RegistryError && e.reason === 'notFound') return undefined;
    throw e;
  }
  const bad = (why: string) =>
    new Img2vmError(
      'badImage',
      `${name} is not a disk img2vm can use: ${why}`,
      'remove the tag, or use another --cache-from',
    );
  let m: z.infer<typeof ArtifactSchema>;
  try {
    const parsed = ArtifactSchema.safeParse(JSON.parse(got.bytes.toString('utf8')));
    if (!parsed.success) throw bad(`its manifest is not an img2vm disk artifact (${parsed.error.issues[0]?.message})`);
    m = parsed.data;
  } catch (e) {
    throw e instanceof Img2vmError ? e : bad('its manifest is not JSON');
  }
  if (m.config.size > MAX_JSON) throw bad(`its config declares ${m.config.size} bytes`);
  const fetch = (d: { digest: string; size: number }) =>
    cache.fetch(d.digest, d.size, ctx.scope, { signal: ctx.signal }, (w) =>
      client.downloadBlob(r.path, d.digest, w, () => {}, ctx.signal),
    );
  await cache.hold(m.config.digest, ctx.scope);
  await fetch(m.config);
  const cfg = await cache.read(m.config.digest, MAX_JSON);
  let rec: DiskRecord | undefined;
  try {
    rec = cfg && parseDiskRecord(JSON.parse(cfg.toString('utf8')));
  } catch {
    rec = undefined;
  }
  if (!rec || rec.key !== key) throw bad('its record does not name this key, or its fields do not hash to it');
  const layer = m.layers[0]!;
  if (layer.digest !== `sha256:${rec.sha256}` || layer.size !== rec.bytes)
    throw bad('its layer is not the disk its record names');
  await cache.hold(layer.digest, ctx.scope);
  await fetch(layer);
  try {
    const copied = await copyDisk(cache.pathOf(layer.digest), dest);
    if (copied.sha256 !== rec.sha256) throw bad('the disk it holds changed on the way');
  } catch (e) {
    await rm(dest, { force: true });
    throw e;
  } finally {
    // The disk goes to the disk store and the output; a second copy among the blobs would only take room.
    await cache.store.discard('blob', layer.digest as `sha256:${string}`).catch(() => undefined);
  }
  return rec;
}
