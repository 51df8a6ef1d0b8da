// Creates the FAT EFI system partition inside the disk image at its offset (mkfs.fat --offset) and fills it with mtools.
import type { RunContext } from '../core/context.js';
import { run } from '../tools/index.js';

export interface FatSpec {
  image: string;
  offset: number;
  size: number;
  /** 32-bit volume id as 8 hex digits (fixed by --seed). */
  volumeId: string;
  label: string;
}

/**
 * The exact mkfs.fat argv: FAT32 as the UEFI spec asks of fixed disks; the size is given in KiB blocks.
 * --invariant (fixed timestamps) must come before -i: given after it, it resets the volume id to 1234-ABCD, and the
 * guest's fstab, which names the ESP by volume id, would never mount it.
 */
export function mkfsFatArgs(s: FatSpec): string[] {
  return ['-F', '32', '-S', '512', '-s', '1', '-n', s.label, '--invariant', '-i', s.volumeId, `--offset=${s.offset / 512}`, s.image, String(Math.floor(s.size / 1024))];
}

/** mtools addresses a file system inside an image as IMAGE@@OFFSET. */
export function mtoolsImage(image: string, offset: number): string {
  return `${image}@@${offset}`;
}

// mtools checks the geometry against the BIOS conventions of floppies; an ESP inside a disk image fails them.
const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1', MTOOLS_NO_VFAT: '0' };

export async function makeFat(spec: FatSpec, ctx: RunContext): Promise<void> {
  await run('mkfs.fat', mkfsFatArgs(spec), { signal: ctx.signal });
}

/** Copies host files into the FAT file system, creating the directories on the way. */
export async function fatCopy(image: string, offset: number, files: { src: string; dest: string }[], ctx: RunContext): Promise<void> {
  const img = mtoolsImage(image, offset);
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.dest.split('/').filter(Boolean).slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const d of [...dirs].sort()) await run('mmd', ['-i', img, `::/${d}`], { signal: ctx.signal, env: MTOOLS_ENV });
  for (const f of files) await run('mcopy', ['-i', img, '-o', f.src, `::/${f.dest.replace(/^\/+/, '')}`], { signal: ctx.signal, env: MTOOLS_ENV });
}
