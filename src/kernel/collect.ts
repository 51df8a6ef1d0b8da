// Picks kernel material (vmlinuz, config, lib/modules) out of tar streams — one .deb's data or an image's layers with whiteouts — into a private staging directory.
import { closeSync, copyFileSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { TarReader, type TarHeader } from '../rootfs/tar.js';

export class CollectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CollectError';
  }
}

export interface CollectLimits {
  /** Bytes of kernel material kept, over all entries. */
  maxBytes: number;
  maxFiles: number;
}

export const DEFAULT_LIMITS: CollectLimits = { maxBytes: 4 * 2 ** 30, maxFiles: 200_000 };

const SAFE_COMPONENT = /^[A-Za-z0-9._+,@=~-]{1,255}$/;
const VERSION = /^[0-9][A-Za-z0-9._+~-]{0,127}$/;

/** "./usr/lib/modules/x/" → "usr/lib/modules/x"; undefined for paths that leave the root or have odd components. */
export function normalizeArchivePath(p: string): string | undefined {
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.length === 0 || parts.some((c) => c === '..')) return undefined;
  return parts.join('/');
}

/** Whether an image path is kernel material, and so worth keeping. */
export function isKernelPath(path: string): boolean {
  if (path === 'kernel' || path === 'kernel.tar' || path === 'boot/vmlinuz') return true;
  const b = /^boot\/(vmlinuz|config)-([^/]+)$/.exec(path);
  if (b) return VERSION.test(b[2]!);
  const m = /^(?:usr\/)?lib\/modules\/([^/]+)\/(.+)$/.exec(path);
  return !!m && VERSION.test(m[1]!) && m[2]!.split('/').every((c) => SAFE_COMPONENT.test(c));
}

interface Kept {
  file: string;
  seq: number;
}

/**
 * Keeps the kernel files of a sequence of tar streams, later ones replacing earlier ones. With
 * whiteouts on, each stream is an image layer: ".wh.NAME" removes NAME and ".wh..wh..opq" empties
 * a directory, both only for what lower layers brought.
 */
export class KernelCollector {
  private readonly kept = new Map<string, Kept>();
  private seq = 0;
  private bytes = 0;
  skipped = 0;

  constructor(
    private readonly staging: string,
    private readonly limits: CollectLimits = DEFAULT_LIMITS,
  ) {
    mkdirSync(staging, { recursive: true });
  }

  /** Reads one whole tar stream. */
  async addTar(reader: TarReader, o: { whiteouts: boolean }): Promise<void> {
    const layerStart = this.seq;
    const removeLower = (pred: (p: string) => boolean): void => {
      for (const [p, k] of this.kept) {
        if (k.seq < layerStart && pred(p)) {
          rmSync(k.file, { force: true });
          this.kept.delete(p);
        }
      }
    };
    for (let h = await reader.next(); h; h = await reader.next()) {
      const path = normalizeArchivePath(h.path);
      if (path === undefined) {
        this.skipped++;
        continue;
      }
      const slash = path.lastIndexOf('/');
      const base = path.slice(slash + 1);
      const dir = slash < 0 ? '' : path.slice(0, slash);
      if (o.whiteouts && base.startsWith('.wh.')) {
        if (base === '.wh..wh..opq') removeLower((p) => dir === '' || p.startsWith(`${dir}/`));
        else if (!base.startsWith('.wh..wh.')) {
          const gone = dir ? `${dir}/${base.slice(4)}` : base.slice(4);
          removeLower((p) => p === gone || p.startsWith(`${gone}/`));
        }
        continue;
      }
      // A symlink (or device) hides what lower layers had below its path: a symlink /lib over a directory /lib.
      if (h.type !== 'dir' && h.type !== 'file' && h.type !== 'link') removeLower((p) => p.startsWith(`${path}/`));
      if (h.type !== 'file' && h.type !== 'link') {
        if (h.type !== 'dir') this.drop(path);
        continue;
      }
      if (!isKernelPath(path)) continue;
      if (h.type === 'link') {
        const target = normalizeArchivePath(h.linkpath);
        const src = target === undefined ? undefined : this.kept.get(target);
        if (!src) {
          this.skipped++;
          continue;
        }
        const file = this.next();
        copyFileSync(src.file, file);
        this.replace(path, file);
        continue;
      }
      await this.write(path, h, reader);
    }
  }

  private next(): string {
    if (this.kept.size >= this.limits.maxFiles)
      throw new CollectError(`more than ${this.limits.maxFiles} kernel files`);
    return join(this.staging, String(this.seq++));
  }

  private drop(path: string): void {
    const k = this.kept.get(path);
    if (k) rmSync(k.file, { force: true });
    this.kept.delete(path);
  }

  private replace(path: string, file: string): void {
    this.drop(path);
    this.kept.set(path, { file, seq: this.seq - 1 });
  }

  private async write(path: string, h: TarHeader, reader: TarReader): Promise<void> {
    this.bytes += h.size;
    if (this.bytes > this.limits.maxBytes)
      throw new CollectError(`kernel files add up to more than ${this.limits.maxBytes} bytes`);
    const file = this.next();
    const fd = openSync(file, 'w', 0o644);
    try {
      // Synchronous writes keep memory flat: the reader's slices are valid only during the call.
      await reader.readData((c) => {
        let off = 0;
        while (off < c.length) off += writeSync(fd, c, off, c.length - off);
      });
    } finally {
      closeSync(fd);
    }
    this.replace(path, file);
  }

  /** What survived every layer: image path → staged file, in the order the files arrived. */
  files(): Map<string, string> {
    return new Map([...this.kept].sort((a, b) => a[1].seq - b[1].seq).map(([p, k]) => [p, k.file]));
  }
}
