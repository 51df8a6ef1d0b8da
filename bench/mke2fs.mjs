// The baseline the ext4 writer is measured against: mke2fs -d with the feature set img2vm writes (benchmarks only).

/**
 * The features img2vm's writer uses, so the baseline does not depend on the host's e2fsprogs defaults: GRUB 2.06 and
 * Linux 5.x+ read all of these (orphan_file, metadata_csum_seed and large_dir are left out, as GRUB 2.06 refuses them).
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

/** mke2fs's argv for a file system of a directory's tree at an offset of an image (no mount, no loop device). */
export function mke2fsArgs(s) {
  const ext = [`offset=${s.offset}`, 'root_owner=0:0', 'lazy_itable_init=0', 'lazy_journal_init=0'];
  if (s.hashSeed) ext.push(`hash_seed=${s.hashSeed}`);
  return [
    '-q',
    '-F',
    '-t',
    'ext4',
    '-b',
    '4096',
    '-N',
    String(s.inodes),
    '-J',
    `size=${s.journalMiB}`,
    '-m',
    '1',
    '-U',
    s.uuid,
    '-L',
    s.label,
    '-E',
    ext.join(','),
    '-d',
    s.source,
    s.image,
    `${Math.floor(s.size / 1024)}k`,
  ];
}
