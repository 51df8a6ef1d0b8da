// What every source yields: an image config and its layers in order, each opened as a byte stream.
import { z } from 'zod';
import type { Readable } from 'node:stream';
import type { RootTree } from '../rootfs/tree-edit.js';

export const ImageConfigSchema = z
  .object({
    architecture: z.string().optional(),
    os: z.string().optional(),
    config: z
      .object({
        Env: z.array(z.string()).nullish(),
        Entrypoint: z.array(z.string()).nullish(),
        Cmd: z.array(z.string()).nullish(),
        WorkingDir: z.string().nullish(),
        User: z.string().nullish(),
        Labels: z.record(z.string(), z.string()).nullish(),
      })
      .passthrough()
      .nullish(),
    rootfs: z.object({ type: z.string(), diff_ids: z.array(z.string()) }).optional(),
  })
  .passthrough();

export type ImageConfig = z.infer<typeof ImageConfigSchema>;

export interface Layer {
  /** A name for messages (the blob digest or path in the archive). */
  name: string;
  /** Opens the layer's tar (possibly compressed) from the start. */
  open(): Promise<Readable>;
  /** The blob's content address and size, when the source knows them (registry, OCI layouts). */
  digest?: string;
  size?: number;
  mediaType?: string;
}

export type SourceTransport = 'docker' | 'docker-daemon' | 'docker-archive' | 'oci' | 'oci-archive';

export interface SourceImage {
  /** The reference as the user gave it. */
  ref: string;
  /** The content address of the image config (sha256:...), the image's identity. */
  id: string;
  config: ImageConfig;
  layers: Layer[];
  /** The config exactly as stored, so the image can be handed on (docker load) under the same id. */
  configBytes?: Buffer;
  /** Set when the image came from the local Docker daemon: its image ID there. */
  daemonId?: string;
  /** The digest of the image manifest, when the source has one. */
  manifestDigest?: string;
  /** Where the image was read from (a bare reference resolves to docker-daemon or docker). */
  transport?: SourceTransport;
  /** A directory this image was unpacked into (under the run's work directory), freed when no longer needed. */
  workDir?: string;
  /** Reads one file of the flattened image without reading the layers (a daemon image: its container's archive). */
  readFile?(path: string): Promise<Buffer | undefined>;
  /** Corrects the flattened tree for what the transport's stream got wrong (a daemon export's init layer). */
  afterFlatten?(tree: RootTree, o: { warnLost: boolean }): Promise<void>;
}
