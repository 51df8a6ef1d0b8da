// The rootfs steps: flatten the layers into an in-memory tree while file contents stream straight into the root
// file system inside the disk (one pass, no staging tree, no privileges), then write img2vm's own files into it.
import { join } from 'node:path';
import { Transform } from 'node:stream';
import type { ConversionRun, StepFn } from '../core/conversion.js';
import { Img2vmError } from '../core/errors.js';
import { progress } from '../core/events.js';
import { formatSize } from '../core/units.js';
import { testHook } from '../core/test-hook.js';
import { Ext4Writer } from '../disk/ext4/index.js';
import { inodesFor } from '../disk/sizing.js';
import { GUEST_STRATEGIES } from '../guest/index.js';
import { openDiskTarget, rootOffset } from '../output/target.js';
import { LayerFlattener } from './layers.js';
import { detachBoot, exportFromTree, findKernelInTree, hasResolvedInTree, probeUserlandInTree, writeGuestFilesToTree } from './tree-guest.js';
import { treeStats } from './tree-stats.js';
import type { RootTree } from './tree-edit.js';
import { binPath } from './tree-path.js';

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

function contentFacts(tree: RootTree): { blocks4k: number; entries: number; bytes: number; files: number } {
  const s = treeStats(tree);
  return { blocks4k: s.blocks4k, entries: s.files + s.dirs + s.symlinks + s.specials, bytes: s.bytes, files: s.files };
}

const flatten: StepFn = async (r) => {
  const img = r.image!;
  const fs = r.plan.filesystems.find((f) => f.role === 'root');
  r.target ??= openDiskTarget(r);
  // File contents go straight to their final place: the root file system's data area inside the disk.
  r.rootWriter = new Ext4Writer({
    target: r.target,
    offset: rootOffset(r.plan, r.options),
    ...(r.plan.sizing === 'fixed' && fs ? { maxBytes: fs.size } : {}),
    uuid: r.plan.rootUuid,
    label: 'root',
    hashSeed: r.plan.rootHashSeed,
    epoch: r.epoch,
  });
  const sizes = img.layers.map((l) => l.size);
  const total = sizes.every((s) => s !== undefined) ? sizes.reduce((a, b) => a! + b!, 0) : undefined;
  const bar = progress(r.ctx.sink, 'rootfs', 'bytes', total, `${img.layers.length} layer${img.layers.length === 1 ? '' : 's'}`);
  const f = new LayerFlattener({
    store: r.rootWriter,
    epoch: { sec: r.epoch, nsec: 0 },
    signal: r.ctx.signal,
    onWarning: (m) => r.ctx.sink({ type: 'log', level: 'warn', stage: 'rootfs', message: m }),
    layers: img.layers.length,
  });
  for (const layer of img.layers) await f.applyLayer(counted(await layer.open(), (n) => bar.add(n)));
  bar.end();
  const { tree, stats } = f.finish();
  // Only the image's own configuration is kept as it is: the other strategies write these files themselves.
  await img.afterFlatten?.(tree, { warnLost: r.plan.guest.strategy === 'image' });
  r.tree = tree;
  r.facts.content = contentFacts(tree);
  const strategy = GUEST_STRATEGIES[r.plan.guest.strategy];
  if (strategy.kernelFromImage) {
    const kernel = findKernelInTree(tree);
    if (!kernel) throw new Img2vmError('badImage', 'the image has no kernel in /boot', strategy.noKernelHint);
    r.facts.kernel = kernel;
  }
  r.facts.hasResolved = hasResolvedInTree(tree);
  r.facts.userland = probeUserlandInTree(tree);
  r.replan();
  return `${stats.files} files, ${formatSize(stats.bytes)}`;
};

const configure: StepFn = async (r) => {
  const tree = r.tree!;
  const strategy = GUEST_STRATEGIES[r.plan.guest.strategy];
  await strategy.beforeConfigure?.(r);
  const epoch = r.epoch;
  await writeGuestFilesToTree(
    tree,
    r.plan.guestFiles,
    async (f) => {
      if (f.path === '/etc/shadow') await setRootPassword(r, epoch);
      else await strategy.edit?.(r, f);
    },
    r.ctx.work,
  );
  for (const e of r.plan.exports) {
    const dest = join(r.ctx.work, e.as);
    const n = tree.lookup(binPath(e.path));
    if (n?.kind !== 'file' && e.optional) continue;
    await exportFromTree(tree, e.path, dest);
    r.exported.set(e.as, dest);
  }
  if (r.options.bootPartition !== undefined) {
    // /boot becomes its own file system: its tree is taken out, an empty mount point stays.
    r.bootTree = detachBoot(tree);
    const boot = r.bootTree;
    const s = treeStats({ root: boot, nameCount: (n) => tree.nameCount(n), dataBlocks: (n) => tree.dataBlocks(n) } as RootTree);
    r.facts.content = { ...contentFacts(tree), boot: { blocks4k: s.blocks4k, entries: s.files + s.dirs + s.symlinks + s.specials } };
  } else r.facts.content = contentFacts(tree);
  // What the writer itself needs for this tree: the plan sizes the file system to at least that.
  const slack = { blocks4k: r.facts.content.blocks4k, entries: r.facts.content.entries };
  r.facts.content.minimumBytes = r.rootWriter!.measure(tree.root).minimumBytes(inodesFor(slackStats(slack)));
  r.replan();
  const n = r.plan.guestFiles.filter((g) => g.fs !== 'esp').length;
  return `${n} file${n === 1 ? '' : 's'}`;
};

/** The content with the plan's headroom for entries, as inodesFor sizes the inode table. */
function slackStats(c: { blocks4k: number; entries: number }): { blocks4k: number; entries: number } {
  return { blocks4k: c.blocks4k + 4096, entries: c.entries + 1000 };
}

async function setRootPassword(r: ConversionRun, epoch: number): Promise<void> {
  const { passwordShadow } = await import('../guest/configure.js');
  const tree = r.tree!;
  const shadow = (await tree.readFile(binPath('/etc/shadow')))?.toString('utf8') ?? '';
  const group = (await tree.readFile(binPath('/etc/group')))?.toString('utf8') ?? '';
  const { content, gid } = passwordShadow(shadow, group, r.options.password!, r.ctx.random.fork('password'), epoch);
  tree.writeFile(binPath('/etc/shadow'), content, { mode: 0o640, uid: 0, gid });
}

export const ROOTFS_STEPS: Record<string, StepFn> = { flatten, configure };
