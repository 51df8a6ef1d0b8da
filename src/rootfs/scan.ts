// Measures what a flattened image would hold by reading only its layers' tar headers (no content written, no
// privileges): the facts `img2vm plan` sizes a disk from. Parents are taken by name; symlinked parents are not
// followed, which only matters for images that put files through their own symlinks.
import { posix } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { ContentFacts, KernelFacts } from '../core/plan.js';
import type { SourceImage } from '../source/image.js';
import { openLayer } from './decompress.js';
import { ByteSource, TarFormatError, TarReader, type TarHeader } from './tar.js';

interface Entry {
  type: TarHeader['type'];
  size: number;
  linkpath: string;
}

export interface ScanResult {
  content: ContentFacts;
  kernel: KernelFacts | null;
  hasResolved: boolean;
}

function clean(p: string): string {
  const n = posix.normalize(`/${Buffer.from(p, 'latin1').toString('utf8')}`);
  return n === '/' ? '/' : n.replace(/\/+$/, '');
}

function removeTree(tree: Map<string, Entry>, path: string): void {
  tree.delete(path);
  const prefix = path === '/' ? '/' : `${path}/`;
  for (const k of [...tree.keys()]) if (k.startsWith(prefix)) tree.delete(k);
}

export async function scanImage(img: SourceImage, signal?: AbortSignal): Promise<ScanResult> {
  const tree = new Map<string, Entry>();
  for (const layer of img.layers) {
    const opened = await openLayer(await layer.open(), signal);
    const added = new Set<string>();
    try {
      const tar = new TarReader(new ByteSource(opened.chunks));
      for (let h = await tar.next(); h; h = await tar.next()) {
        const path = clean(h.path);
        const base = posix.basename(path);
        const dir = posix.dirname(path);
        if (base === '.wh..wh..opq') {
          for (const k of [...tree.keys()]) if (k.startsWith(`${dir === '/' ? '' : dir}/`) && !added.has(k)) tree.delete(k);
        } else if (base.startsWith('.wh.')) {
          const target = posix.join(dir, base.slice(4));
          if (!added.has(target)) removeTree(tree, target);
        } else if (h.type !== 'unknown') {
          if (h.type !== 'dir') removeTree(tree, path);
          tree.set(path, { type: h.type, size: h.type === 'file' ? h.size : 0, linkpath: Buffer.from(h.linkpath, 'latin1').toString('utf8') });
          added.add(path);
        }
      }
    } catch (e) {
      opened.destroy(e);
      if (e instanceof TarFormatError) throw new Img2vmError('badImage', `layer ${layer.name} is corrupt: ${e.message}`, 'the image is damaged; pull or save it again');
      throw e;
    } finally {
      opened.dispose();
    }
  }
  let blocks4k = 0;
  let bytes = 0;
  let files = 0;
  let entries = 0;
  const dirEntries = new Map<string, number>();
  for (const [path, e] of tree) {
    const parent = posix.dirname(path);
    dirEntries.set(parent, (dirEntries.get(parent) ?? 0) + 1);
    if (e.type === 'link') continue; // another name of an inode counted already
    entries++;
    if (e.type === 'file') {
      files++;
      bytes += e.size;
      blocks4k += Math.ceil(e.size / 4096);
    } else if (e.type === 'symlink' && e.linkpath.length >= 60) blocks4k++;
  }
  for (const n of dirEntries.values()) blocks4k += Math.ceil((24 + n * 32) / 4096);
  return { content: { blocks4k, entries, bytes, files }, kernel: kernelOf(tree), hasResolved: tree.get('/usr/lib/systemd/systemd-resolved')?.type === 'file' };
}

/** The newest /boot/vmlinuz-*, with Debian's /vmlinuz links when they point at it (as findKernel decides on a tree). */
function kernelOf(tree: Map<string, Entry>): KernelFacts | null {
  const versions = [...tree.keys()]
    .filter((p) => p.startsWith('/boot/vmlinuz-') && !p.slice(6).includes('/'))
    .map((p) => p.slice('/boot/vmlinuz-'.length))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const version = versions.at(-1);
  if (!version) return null;
  const hasInitrd = tree.has(`/boot/initrd.img-${version}`);
  const link = (name: string, target: string) => {
    const e = tree.get(name);
    return e?.type === 'symlink' && e.linkpath.replace(/^\/+/, '') === target;
  };
  const useLinks = link('/vmlinuz', `boot/vmlinuz-${version}`) && (!hasInitrd || link('/initrd.img', `boot/initrd.img-${version}`));
  return {
    version,
    kernelPath: useLinks ? '/vmlinuz' : `/boot/vmlinuz-${version}`,
    initrdPath: hasInitrd ? (useLinks ? '/initrd.img' : `/boot/initrd.img-${version}`) : undefined,
  };
}
