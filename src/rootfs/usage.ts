// Measures a staged tree (blocks and inodes) without following symlinks, for sizing a file system made from it.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export async function treeUsage(root: string): Promise<{ blocks4k: number; entries: number }> {
  let blocks4k = 0;
  let entries = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const p = join(dir, name);
      const st = await lstat(p);
      entries++;
      blocks4k += Math.ceil((st.blocks * 512) / 4096);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return { blocks4k, entries };
}
