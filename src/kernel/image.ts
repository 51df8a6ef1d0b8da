// A kernel shipped in a container image (linuxkit's /kernel + /kernel.tar, or /boot/vmlinuz-* + /lib/modules), read from its layers with whiteouts honoured.
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { isCodecError, openLayer } from '../rootfs/decompress.js';
import { ByteSource, TarFormatError, TarReader } from '../rootfs/tar.js';
import { openSource } from '../source/index.js';
import { buildTree } from './build.js';
import { bundleOf, type KernelBundle } from './bundle.js';
import type { KernelCache } from './cache.js';
import type { KernelOptions } from './options.js';

export async function imageKernel(
  ref: string,
  ctx: RunContext,
  o: KernelOptions,
  cache: KernelCache,
): Promise<KernelBundle> {
  const image = await openSource(ref, ctx, o.docker, { cacheDir: o.cacheDir, ...o.source });
  const hex = image.id.replace(/^sha256:/, '');
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new Img2vmError(
      'badImage',
      `image ${ref} has an unusable id ${image.id.slice(0, 80)}`,
      'use an image with a sha256 config digest',
    );
  const name = `image-${hex}`;
  const cached = await cache.take(name, ctx.scope);
  if (cached) return bundleOf(cache.treeDir(name), cached);
  const record = await buildTree(
    cache,
    name,
    ctx,
    `image ${ref}`,
    async (collector) => {
      for (const layer of image.layers) {
        const opened = await openLayer(await layer.open(), ctx.signal);
        try {
          await collector.addTar(new TarReader(new ByteSource(opened.chunks)), { whiteouts: true });
        } catch (e) {
          opened.destroy(e);
          if (e instanceof TarFormatError || isCodecError(e))
            throw new Img2vmError(
              'badImage',
              `image ${ref}, layer ${layer.name}: ${e.message}`,
              'the image is damaged; rebuild or re-pull it',
            );
          throw e;
        } finally {
          await opened.dispose();
        }
      }
    },
    () => ({ id: image.id, origin: `image ${ref}`, source: { kind: 'image', ref, imageId: image.id } }),
  );
  return bundleOf(cache.treeDir(name), record);
}
