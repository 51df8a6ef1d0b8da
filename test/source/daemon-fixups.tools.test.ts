// The daemon source's init-layer fix-up with an overlay2 whiteout made by mknod (as root): a deleted parent hides the lower layer's files.
import { execa } from 'execa';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { binPath } from '../../src/rootfs/tree-path.js';
import type { Node } from '../../src/rootfs/tree.js';
import type { ImageInspect } from '../../src/source/docker-api.js';
import { initLayerFixup } from '../../src/source/transports/daemon-fixups.js';

const EPOCH = { sec: 0, nsec: 0 };
let tmp: string;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-fixups-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** What `docker export` of a container shows: Docker's init layer over the image (its own /etc, empty files, /etc/mtab). */
function exportTree(): RootTree {
  const t = new RootTree({ store: new MemoryStore(), epoch: EPOCH });
  for (const p of ['/.dockerenv', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/dev/console'])
    t.writeFile(binPath(p), '', { mode: 0o755 });
  t.symlink(binPath('/etc/mtab'), binPath('/proc/mounts'));
  for (const d of ['/dev/pts', '/dev/shm', '/proc', '/sys']) t.mkdirp(binPath(d));
  return t;
}

function overlay(upper: string, lower: string[]): ImageInspect {
  return {
    Id: 'sha256:x',
    GraphDriver: { Name: 'overlay2', Data: { UpperDir: upper, LowerDir: lower.join(':') } },
  } as ImageInspect;
}

/** Every file's bytes in the tree, to look for the lower layer's content anywhere. */
async function allContent(t: RootTree): Promise<string> {
  const out: string[] = [];
  const walk = async (n: Node): Promise<void> => {
    if (n.kind === 'dir') for (const c of n.entries.values()) await walk(c);
    else if (n.kind === 'file')
      for await (const c of n.data.store.read(n.data)) out.push(Buffer.from(c).toString('latin1'));
  };
  await walk(t.root);
  return out.join('');
}

describe('initLayerFixup on overlay2 layer directories', () => {
  it('a deleted parent (overlay2 whiteout, a 0:0 character device) hides the lower layer files below it', async () => {
    const lower = join(tmp, 'l1');
    await mkdir(join(lower, 'etc'), { recursive: true });
    await writeFile(join(lower, 'etc', 'hosts'), 'lower hosts\n');
    const upper = join(tmp, 'u');
    await mkdir(upper);
    await execa('mknod', [join(upper, 'etc'), 'c', '0', '0']);
    const t = exportTree();
    await initLayerFixup(overlay(upper, [lower]))(t, { warnLost: true });
    expect(await allContent(t)).not.toContain('lower hosts');
  });
});
