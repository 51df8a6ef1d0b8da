// Image indexes and manifests (OCI and Docker schema 2): media types, zod schemas, and classifying a fetched document.
import { z } from 'zod';
import { Img2vmError } from '../core/errors.js';
import { DigestSchema } from './digest.js';

export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What we ask registries for, best first; schema 1 is left out on purpose so a registry converts or refuses. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.dockerList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
].join(', ');

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerList]);
const MANIFEST_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const CONFIG_TYPES = new Set<string>([MediaType.ociConfig, MediaType.dockerConfig]);

export const PlatformSchema = z
  .object({
    architecture: z.string(),
    os: z.string(),
    variant: z.string().optional(),
    'os.version': z.string().optional(),
  })
  .passthrough();

export const DescriptorSchema = z
  .object({
    mediaType: z.string(),
    digest: DigestSchema,
    size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    urls: z.array(z.string()).nullish(),
    annotations: z.record(z.string(), z.string()).nullish(),
    platform: PlatformSchema.nullish(),
  })
  .passthrough();

export type Descriptor = z.infer<typeof DescriptorSchema>;

export const IndexSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    manifests: z.array(DescriptorSchema),
    annotations: z.record(z.string(), z.string()).nullish(),
  })
  .passthrough();

export type ImageIndex = z.infer<typeof IndexSchema>;

export const ImageManifestSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    config: DescriptorSchema,
    layers: z.array(DescriptorSchema),
  })
  .passthrough();

export type ImageManifest = z.infer<typeof ImageManifestSchema>;

export type Document = { kind: 'index'; index: ImageIndex } | { kind: 'manifest'; manifest: ImageManifest };

/** Parses JSON text with a message that names the document, for badImage errors. */
export function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new Img2vmError(
      'badImage',
      `${what} is not valid JSON: ${(e as Error).message}`,
      'the image source is corrupt or not an image',
    );
  }
}

/** One line per problem, "path: message", joined: error messages here are one line. */
export function formatZodError(e: z.ZodError): string {
  const problems = e.issues.slice(0, 5).map((i) => {
    const path = i.path.map((p, n) => (typeof p === 'number' ? `[${p}]` : `${n ? '.' : ''}${String(p)}`)).join('');
    return path ? `${path}: ${i.message}` : i.message;
  });
  if (e.issues.length > 5) problems.push(`and ${e.issues.length - 5} more`);
  return problems.join('; ');
}

export function validate<T extends z.ZodType>(schema: T, data: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(data);
  if (!r.success) {
    throw new Img2vmError(
      'badImage',
      `${what} is invalid: ${formatZodError(r.error)}`,
      'the image source is corrupt or not a container image',
    );
  }
  return r.data;
}

/** Tells an index from a manifest by its media type (the document's own field first, then the HTTP header), else by its shape. */
export function parseDocument(bytes: Buffer, what: string, contentType?: string): Document {
  const data = parseJson(bytes, what);
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new Img2vmError(
      'badImage',
      `${what} is not a JSON object`,
      'the image source is corrupt or not a container image',
    );
  }
  const obj = data as Record<string, unknown>;
  const header = contentType?.split(';')[0]?.trim();
  const mt = typeof obj.mediaType === 'string' ? obj.mediaType : header;
  if (obj.schemaVersion === 1 || mt === MediaType.dockerSchema1 || mt === MediaType.dockerSchema1Signed) {
    throw new Img2vmError(
      'badImage',
      `${what} is a Docker schema 1 manifest, which is deprecated and not supported`,
      'push the image again with a current docker or registry (schema 2 or OCI)',
    );
  }
  const isIndex = mt ? INDEX_TYPES.has(mt) : 'manifests' in obj;
  const isManifest = mt ? MANIFEST_TYPES.has(mt) : 'config' in obj && 'layers' in obj;
  if (isIndex) return { kind: 'index', index: validate(IndexSchema, obj, what) };
  if (isManifest) {
    const manifest = validate(ImageManifestSchema, obj, what);
    checkImageManifest(manifest, what);
    return { kind: 'manifest', manifest };
  }
  throw new Img2vmError(
    'badImage',
    `${what} has media type ${mt ?? '(none)'}, which is not an image index or manifest`,
    'the reference names something other than a container image',
  );
}

export function isIndexType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType);
}

const LAYER_TYPE =
  /^application\/vnd\.(oci\.image\.layer\.(nondistributable\.)?v1\.tar|docker\.image\.rootfs\.(foreign\.)?diff\.tar)(\.gzip|\+gzip|\+zstd)?$/;

/** Refuses artifacts (Helm charts, signatures, attestations) that are manifests but not images. */
function checkImageManifest(m: ImageManifest, what: string): void {
  if (!CONFIG_TYPES.has(m.config.mediaType)) {
    throw new Img2vmError(
      'badImage',
      `${what} has a config of type ${m.config.mediaType}: not a container image`,
      'the reference names an artifact, not an image',
    );
  }
  for (const l of m.layers) {
    if (!LAYER_TYPE.test(l.mediaType)) {
      throw new Img2vmError(
        'badImage',
        `${what} has a layer ${l.digest} of unsupported type ${l.mediaType}`,
        'only tar layers (plain, gzip, zstd) are supported',
      );
    }
  }
}
