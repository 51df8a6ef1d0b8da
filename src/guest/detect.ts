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
  prettyName?: string;
}

export function parseOsRelease(text: string): OsRelease {
  const kv: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    kv[m[1]!] = v.replace(/\\(["$`\\])/g, '$1');
  }
  return {
    id: (kv.ID ?? 'linux').toLowerCase(),
    idLike: (kv.ID_LIKE ?? '').split(/\s+/).filter(Boolean),
    versionId: kv.VERSION_ID,
    versionCodename: kv.VERSION_CODENAME,
    prettyName: kv.PRETTY_NAME,
  };
}

const CANDIDATES = ['etc/os-release', 'usr/lib/os-release'];

/** Reads os-release as the flattened image would show it; undefined for images without an OS (scratch). */
export async function detectOs(img: SourceImage, signal?: AbortSignal): Promise<OsRelease | undefined> {
  const found = new Map<string, string | null>();
  for (const layer of img.layers) {
    const opened = await openLayer(await layer.open(), signal);
    try {
      const tar = new TarReader(new ByteSource(opened.chunks));
      for (let h = await tar.next(); h; h = await tar.next()) {
        const name = posix.normalize(Buffer.from(h.path, 'latin1').toString('utf8').replace(/^\.?\/+/, '')).replace(/\/$/, '');
        const base = posix.basename(name);
        const dir = posix.dirname(name);
        if (base.startsWith('.wh.')) {
          const target = base === '.wh..wh..opq' ? dir : posix.join(dir, base.slice(4));
          for (const c of CANDIDATES) if (c === target || c.startsWith(`${target}/`)) found.set(c, null);
        } else if (CANDIDATES.includes(name)) {
          if (h.type === 'file' && h.size <= 64 * 1024) {
            const parts: Buffer[] = [];
            await tar.readData((c) => parts.push(Buffer.from(c)));
            found.set(name, Buffer.concat(parts).toString('utf8'));
          } else {
            // a symlink such as etc/os-release -> ../usr/lib/os-release: the other candidate answers
            found.set(name, null);
          }
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
  for (const c of CANDIDATES) {
    const t = found.get(c);
    if (t) return parseOsRelease(t);
  }
  return undefined;
}
