// The rootfs stage: flatten the layers into an in-memory tree while file contents stream straight into the root
// file system inside the disk (one pass, no staging tree, no privileges), then write the plan's guest files into it
// and measure what the file systems must hold.
import { join } from 'node:path';
import { Transform } from 'node:stream';
import type { Env } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { progress } from '../core/events.js';
import type { ContentFacts, ConversionPlan, GuestFile, TreeFacts } from '../core/plan.js';
import { testHook } from '../core/test-hook.js';
import { LayerFlattener, type Flattened } from './layers.js';
import {
  detachBoot,
  exportFromTree,
  findKernelInTree,
  hasResolvedInTree,
  probeUserlandInTree,
  writeGuestFilesToTree,
} from './tree-guest.js';
import { treeStats } from './tree-stats.js';
import type { RootTree } from './tree-edit.js';
import { binPath } from './tree-path.js';
import type { ContentStore, DirNode } from './tree.js';

/** Counts the bytes of each layer blob as the flattener reads it, for the progress bar. */
function counted(stream: NodeJS.ReadableStream, add: (n: number) => void): NodeJS.ReadableStream {
  let first = true;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      add(chunk.length);
      if (!first) return cb(null, chunk);
      // The first chunk is held while a test interrupts mid-layer (see core/test-hook.ts).
      first = false;
      void testHook('during', 'rootfs/flatten').then(() => cb(null, chunk));
    },
  });
  stream.on('error', (e) => t.destroy(e));
  return stream.pipe(t);
}

/** What flattening needs of an image (a source's SourceImage is one): its layers in order, and a fix-up of the result. */
export interface LayeredImage {
  layers: readonly { open(): Promise<NodeJS.ReadableStream>; size?: number }[];
  afterFlatten?(tree: RootTree, o: { warnLost: boolean }): Promise<void>;
}

/** Flattens the image's layers into a tree whose file contents go to `store` as they stream. */
export async function flattenImage(
  image: LayeredImage,
  store: ContentStore,
  env: Env,
  o: { warnLost: boolean },
): Promise<Flattened> {
  const sizes = image.layers.map((l) => l.size);
  const total = sizes.every((s) => s !== undefined) ? sizes.reduce((a, b) => a! + b!, 0) : undefined;
  const bar = progress(
    env.sink,
    'rootfs',
    'bytes',
    total,
    `${image.layers.length} layer${image.layers.length === 1 ? '' : 's'}`,
  );
  const f = new LayerFlattener({
    store,
    epoch: { sec: env.epoch, nsec: 0 },
    signal: env.signal,
    onWarning: (m) => env.sink({ type: 'log', level: 'warn', stage: 'rootfs', message: m }),
    layers: image.layers.length,
  });
  for (const layer of image.layers) await f.applyLayer(counted(await layer.open(), (n) => bar.add(n)));
  bar.end();
  const flat = f.finish();
  // What the transport's stream got wrong is put right (a daemon export's init layer); the image strategy keeps the
  // image's own configuration, so it is told what could not be.
  await image.afterFlatten?.(flat.tree, { warnLost: o.warnLost });
  return flat;
}

/** What the bootable tree tells planning: its kernel (or the one img2vm brings), its userland, how it was made. */
export function treeFacts(
  tree: RootTree,
  kernelFromImage: boolean,
  brought: Pick<TreeFacts, 'kernel' | 'kernelBundle' | 'build'>,
  noKernelHint: string,
): TreeFacts {
  let kernel = brought.kernel;
  if (kernelFromImage) {
    const found = findKernelInTree(tree);
    if (!found) throw new Img2vmError('badImage', 'the image has no kernel in /boot', noKernelHint);
    kernel = found;
  }
  return {
    kernel,
    hasResolved: hasResolvedInTree(tree),
    userland: probeUserlandInTree(tree),
    ...(brought.kernelBundle ? { kernelBundle: brought.kernelBundle } : {}),
    ...(brought.build ? { build: brought.build } : {}),
  };
}

/** How `edit` guest files are carried out: the root password here, the rest by the guest strategy. */
export type EditGuestFile = (f: GuestFile) => Promise<void>;

/** The configured tree: files copied out of it by the names the plan gives them, and /boot's own tree when separate. */
export interface Configured {
  exported: ReadonlyMap<string, string>;
  bootTree: DirNode | null;
}

/** Writes the plan's guest files into the tree, copies out what the plan exports, and takes /boot out when separate. */
export async function configureTree(
  tree: RootTree,
  plan: ConversionPlan,
  edit: EditGuestFile,
  env: Env,
  o: { estimate?: boolean } = {},
): Promise<Configured> {
  await writeGuestFilesToTree(tree, plan.guestFiles, edit, env.work, o);
  const exported = new Map<string, string>();
  for (const e of plan.exports) {
    const dest = join(env.work, e.as);
    const n = tree.lookup(binPath(e.path));
    if (n?.kind !== 'file' && e.optional) continue;
    await exportFromTree(tree, e.path, dest);
    exported.set(e.as, dest);
  }
  // /boot becomes its own file system: its tree is taken out, an empty mount point stays.
  const bootTree = plan.steps.some((s) => s.target === 'boot') ? detachBoot(tree) : null;
  return { exported, bootTree };
}

/**
 * What the file systems must hold, measured on the final tree: blocks and entries (the root's, and /boot's when it
 * is separate), and the smallest root file system the writer can make of it (which the caller's writer says).
 */
export function measureContent(
  tree: RootTree,
  bootTree: DirNode | null,
  minimumBytes: (content: ContentFacts) => number,
): ContentFacts {
  const s = treeStats(tree);
  const content: ContentFacts = {
    blocks4k: s.blocks4k,
    entries: s.files + s.dirs + s.symlinks + s.specials,
    bytes: s.bytes,
    files: s.files,
  };
  if (bootTree) {
    const b = treeStats({
      root: bootTree,
      nameCount: (n) => tree.nameCount(n),
      dataBlocks: (n) => tree.dataBlocks(n),
    } as RootTree);
    content.boot = { blocks4k: b.blocks4k, entries: b.files + b.dirs + b.symlinks + b.specials };
  }
  content.minimumBytes = minimumBytes(content);
  return content;
}
