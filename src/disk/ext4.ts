// Creates the ext4 root file system inside the disk image at its partition offset with mke2fs -d (no mount, no loop device).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunContext } from '../core/context.js';
import { Img2vmError } from '../core/errors.js';
import { formatSize, MiB, alignUp } from '../core/units.js';
import { run } from '../tools/index.js';

/**
 * Our own mke2fs.conf, so the feature set does not depend on the host's e2fsprogs version:
 * GRUB 2.06 and Linux 5.x+ read all of these; orphan_file, metadata_csum_seed and large_dir
 * (newer mke2fs defaults) are left out because GRUB 2.06 refuses to read file systems with them.
 */
export const MKE2FS_CONF = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
		inode_size = 256
	}
`;

export interface Ext4Spec {
  image: string;
  offset: number;
  size: number;
  uuid: string;
  label: string;
  inodes: number;
  journalMiB: number;
  /** The directory whose tree becomes the file system. */
  source: string;
  /** Fixes the directory hash seed (reproducible output with --seed). */
  hashSeed?: string;
}

/** The exact mke2fs argv for a spec (pure, asserted by tests). */
export function mke2fsArgs(s: Ext4Spec): string[] {
  const ext = [`offset=${s.offset}`, 'root_owner=0:0', 'lazy_itable_init=0', 'lazy_journal_init=0'];
  if (s.hashSeed) ext.push(`hash_seed=${s.hashSeed}`);
  return [
    '-q', '-F', '-t', 'ext4',
    '-b', '4096',
    '-N', String(s.inodes),
    '-J', `size=${s.journalMiB}`,
    '-m', '1',
    '-U', s.uuid,
    '-L', s.label,
    '-E', ext.join(','),
    '-d', s.source,
    s.image,
    `${Math.floor(s.size / 1024)}k`,
  ];
}

export interface ContentStats {
  /** 4 KiB blocks that file data, symlinks and directories take. */
  blocks4k: number;
  /** Number of inodes the tree uses. */
  entries: number;
}

/** Inodes to reserve: the tree's own plus room for the system to create files after boot. */
export function inodesFor(stats: ContentStats): number {
  return alignUp(Math.max(16384, Math.ceil(stats.entries * 1.5) + 8192), 1024);
}

export function journalMiBFor(fsBytes: number): number {
  return fsBytes >= 2048 * MiB ? 64 : fsBytes >= 512 * MiB ? 32 : 16;
}

/**
 * The smallest file system that holds the content: data + inode tables + journal + group metadata
 * (bitmaps, descriptors, reserved GDT ~ 3%) + the 1% reserved for root.
 */
export function minimumFsSize(stats: ContentStats): number {
  const data = stats.blocks4k * 4096;
  const inodeTables = inodesFor(stats) * 256;
  const guess = data + inodeTables;
  const journal = journalMiBFor(guess * 1.1) * MiB;
  return alignUp(Math.ceil((guess + journal) * 1.06) + 16 * MiB, MiB);
}

/** Default headroom above the minimum: 256 MiB plus 15% of the content, so the guest can log and install a little. */
export function defaultFsSize(stats: ContentStats): number {
  const min = minimumFsSize(stats);
  return alignUp(min + 256 * MiB + Math.ceil(stats.blocks4k * 4096 * 0.15), MiB);
}

export async function makeExt4(spec: Ext4Spec, ctx: RunContext): Promise<void> {
  const conf = join(ctx.work, 'mke2fs.conf');
  await writeFile(conf, MKE2FS_CONF);
  const env: Record<string, string> = { MKE2FS_CONFIG: conf };
  if (process.env.SOURCE_DATE_EPOCH) env.E2FSPROGS_FAKE_TIME = process.env.SOURCE_DATE_EPOCH;
  const r = await run('mke2fs', mke2fsArgs(spec), { env, signal: ctx.signal, reject: false });
  if (r.exitCode !== 0) {
    const out = `${r.stderr}\n${r.stdout}`;
    if (/No space left|Could not allocate|too many|inodes/i.test(out)) {
      throw new Img2vmError('sizeTooSmall', `the root file system (${formatSize(spec.size)}) is too small for the image content`, 'give a larger --size, or leave --size out to fit the content');
    }
    throw new Img2vmError('toolFailed', `mke2fs failed: ${out.trim().split('\n').slice(-3).join(' | ')}`, `command: mke2fs ${mke2fsArgs(spec).join(' ')}`);
  }
}
