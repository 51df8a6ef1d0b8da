// Finds the distribution of an image by reading /etc/os-release (or /usr/lib/os-release) out of its layers.
import { posix } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import { openLayer } from '../rootfs/decompress.js';
import { ByteSource, TarFormatError, TarReader } from '../rootfs/tar.js';
import type { SourceImage } from '../source/image.js';

export interface OsRelease {
  id: string;
  idLike: string[];
  versionId?: string;
  versionCodename?: string;
  /** Ubuntu and its derivatives (Mint, Pop!_OS) name the Ubuntu release they are built on. */
  ubuntuCodename?: string;
  prettyName?: string;
}

/** os-release is a list of shell-style assignments; values may be quoted and use \ escapes inside quotes. */
export function parseOsRelease(text: string): OsRelease {
  const kv: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"') && v.length >= 2) || (v.startsWith("'") && v.endsWith("'") && v.length >= 2)) v = v.slice(1, -1);
    kv[m[1]!] = v.replace(/\\(["$`\\])/g, '$1');
  }
  const lower = (v: string | undefined) => (v === undefined || v === '' ? undefined : v.toLowerCase());
  return {
    id: lower(kv.ID) ?? 'linux',
    idLike: (kv.ID_LIKE ?? '').toLowerCase().split(/\s+/).filter(Boolean),
    versionId: kv.VERSION_ID || undefined,
    versionCodename: lower(kv.VERSION_CODENAME),
    ubuntuCodename: lower(kv.UBUNTU_CODENAME),
    prettyName: kv.PRETTY_NAME || undefined,
  };
}

const CANDIDATES = ['etc/os-release', 'usr/lib/os-release'];
/** Only small files are read: os-release is a few hundred bytes, anything large is not one. */
const MAX_FILE = 64 * 1024;
/** Bounds the memory a hostile image can make detection hold. */
const MAX_TRACKED = 256;
const MAX_HOPS = 16;

type Node = { kind: 'file'; text: string } | { kind: 'symlink'; target: string } | { kind: 'hardlink'; target: string } | { kind: 'other' };

/** Whether an entry can matter for finding os-release: the file itself, or a directory on its way. */
function interesting(name: string): boolean {
  return posix.basename(name).includes('os-release') || ['etc', 'usr', 'usr/lib', 'lib'].includes(name);
}

function clean(raw: string): string {
  return posix.normalize(Buffer.from(raw, 'latin1').toString('utf8').replace(/^\.?\/+/, '')).replace(/\/$/, '');
}

/**
 * Resolves a path inside the image with chroot semantics (symlinks re-rooted, '..' stops at the root)
 * over the entries collected from the layers; undefined when it leads nowhere we know.
 */
export function resolveOsRelease(nodes: Map<string, Node>, start: string): string | undefined {
  let todo = start.split('/').filter(Boolean);
  const done: string[] = [];
  let hops = 0;
  while (todo.length) {
    const c = todo.shift()!;
    if (c === '.') continue;
    if (c === '..') {
      done.pop();
      continue;
    }
    const path = [...done, c].join('/');
    const node = nodes.get(path);
    if (node?.kind === 'symlink' || node?.kind === 'hardlink') {
      if (++hops > MAX_HOPS) return undefined;
      // A hard link names its target from the root; a symlink from its own directory unless absolute.
      const target = node.kind === 'hardlink' ? `/${node.target}` : node.target;
      if (target.startsWith('/')) done.length = 0;
      todo = [...target.split('/').filter(Boolean), ...todo];
      continue;
    }
    done.push(c);
    if (!todo.length) return node?.kind === 'file' ? node.text : undefined;
  }
  return undefined;
}

/** Reads os-release as the flattened image would show it; undefined for images without an OS (scratch). */
export async function detectOs(img: SourceImage, signal?: AbortSignal): Promise<OsRelease | undefined> {
  // A daemon image answers for one file without its whole file system being read.
  if (img.readFile) {
    for (const c of ['/etc/os-release', '/usr/lib/os-release']) {
      const text = await img.readFile(c);
      if (text) return parseOsRelease(text.toString('utf8'));
    }
    // os-release may be a symlink the archive endpoint does not follow: read the layers after all.
  }
  const nodes = new Map<string, Node>();
  for (const layer of img.layers) {
    const opened = await openLayer(await layer.open(), signal);
    try {
      const tar = new TarReader(new ByteSource(opened.chunks));
      for (let h = await tar.next(); h; h = await tar.next()) {
        const name = clean(h.path);
        const base = posix.basename(name);
        const dir = posix.dirname(name);
        if (base.startsWith('.wh.')) {
          const gone = base === '.wh..wh..opq' ? dir : posix.join(dir, base.slice(4));
          // An opaque directory hides what lower layers put inside it, not the directory itself.
          for (const k of [...nodes.keys()]) if ((base !== '.wh..wh..opq' && k === gone) || k.startsWith(`${gone}/`)) nodes.delete(k);
          continue;
        }
        if (!interesting(name)) continue;
        if (!nodes.has(name) && nodes.size >= MAX_TRACKED) continue;
        if (h.type === 'file' && h.size <= MAX_FILE && posix.basename(name).includes('os-release')) {
          const parts: Buffer[] = [];
          await tar.readData((c) => parts.push(Buffer.from(c)));
          nodes.set(name, { kind: 'file', text: Buffer.concat(parts).toString('utf8') });
        } else if (h.type === 'symlink') {
          nodes.set(name, { kind: 'symlink', target: Buffer.from(h.linkpath, 'latin1').toString('utf8') });
        } else if (h.type === 'link') {
          nodes.set(name, { kind: 'hardlink', target: clean(h.linkpath) });
        } else {
          nodes.set(name, { kind: 'other' });
        }
      }
    } catch (e) {
      opened.destroy(e);
      if (e instanceof TarFormatError) throw new Img2vmError('badImage', `layer ${layer.name} is corrupt: ${e.message}`, 'the image is damaged; pull or save it again');
      throw e;
    } finally {
      await opened.dispose();
    }
  }
  for (const c of CANDIDATES) {
    const t = resolveOsRelease(nodes, c);
    if (t !== undefined) return parseOsRelease(t);
  }
  return undefined;
}
