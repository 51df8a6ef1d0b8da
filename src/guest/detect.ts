// Finds the distribution of an image by reading /etc/os-release (or /usr/lib/os-release) out of its layers.
import * as tar from 'tar-stream';
import { pipeline } from 'node:stream/promises';
import { posix } from 'node:path';
import type { SourceImage } from '../source/image.js';
import { decompressLayer } from '../source/layer.js';

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
export async function detectOs(img: SourceImage): Promise<OsRelease | undefined> {
  const found = new Map<string, string | null>();
  for (const layer of img.layers) {
    const ex = tar.extract();
    const reading = (async () => {
      for await (const entry of ex) {
        const name = posix.normalize(entry.header.name.replace(/^\.?\/+/, '')).replace(/\/$/, '');
        const base = posix.basename(name);
        const dir = posix.dirname(name);
        if (base.startsWith('.wh.')) {
          const target = base === '.wh..wh..opq' ? dir : posix.join(dir, base.slice(4));
          for (const c of CANDIDATES) if (c === target || c.startsWith(`${target}/`)) found.set(c, null);
        } else if (CANDIDATES.includes(name)) {
          if (entry.header.type === 'file') {
            const parts: Buffer[] = [];
            for await (const c of entry) parts.push(c as Buffer);
            found.set(name, Buffer.concat(parts).toString('utf8').slice(0, 64 * 1024));
            continue;
          }
          // a symlink such as etc/os-release -> ../usr/lib/os-release: fall through to the other candidate
          found.set(name, null);
        }
        entry.resume();
      }
    })();
    await Promise.all([pipeline(await decompressLayer(await layer.open(), layer.name), ex), reading]);
  }
  for (const c of CANDIDATES) {
    const t = found.get(c);
    if (t) return parseOsRelease(t);
  }
  return undefined;
}
