// The daemon source's init-layer fix-up reads the image's own files from overlay2 layer directories: never a host file through the image's symlinks (whiteouts made by mknod: daemon-fixups.tools.test.ts).
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Img2vmEvent } from '../../src/core/events.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { binPath } from '../../src/rootfs/tree-path.js';
import type { Node } from '../../src/rootfs/tree.js';
import type { ImageInspect } from '../../src/source/docker-api.js';
import { initLayerFixup } from '../../src/source/transports/daemon-fixups.js';

const EPOCH = { sec: 0, nsec: 0 };
const MARKER = 'HOST-FILE-MARKER';
let tmp: string;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-fixups-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** What `docker export` of a container shows: Docker's init layer over the image (its own /etc, empty files, /etc/mtab). */
function exportTree(extra: (t: RootTree) => void = () => {}): RootTree {
  const t = new RootTree({ store: new MemoryStore(), epoch: EPOCH });
  for (const p of ['/.dockerenv', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/dev/console'])
    t.writeFile(binPath(p), '', { mode: 0o755 });
  t.symlink(binPath('/etc/mtab'), binPath('/proc/mounts'));
  for (const d of ['/dev/pts', '/dev/shm', '/proc', '/sys']) t.mkdirp(binPath(d));
  extra(t);
  return t;
}

function overlay(upper: string, lower: string[]): ImageInspect {
  return {
    Id: 'sha256:x',
    GraphDriver: { Name: 'overlay2', Data: { UpperDir: upper, LowerDir: lower.join(':') } },
  } as ImageInspect;
}

/** Every file's bytes in the tree, to look for the host's marker anywhere. */
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

/** A host directory holding files an attacker would like to see copied into a disk. */
async function hostDir(): Promise<string> {
  const host = join(tmp, 'host-etc');
  await mkdir(host);
  for (const f of ['hosts', 'hostname', 'resolv.conf', 'mtab']) await writeFile(join(host, f), `${MARKER} ${f}\n`);
  await mkdir(join(host, 'pts'));
  return host;
}

describe('initLayerFixup on overlay2 layer directories', () => {
  it('gives back the image own hosts, hostname and resolv.conf, and drops what only Docker added', async () => {
    const lower = join(tmp, 'l1');
    await mkdir(join(lower, 'etc'), { recursive: true });
    await writeFile(join(lower, 'etc', 'hosts'), '127.0.0.1 image\n', { mode: 0o640 });
    await symlink('../run/resolv.conf', join(lower, 'etc', 'resolv.conf'));
    const upper = join(tmp, 'u');
    await mkdir(upper);
    const t = exportTree();
    await initLayerFixup(overlay(upper, [lower]))(t, { warnLost: true });
    const hosts = t.lookup(binPath('/etc/hosts'), { followLast: false });
    expect(hosts?.kind === 'file' && hosts.meta.mode & 0o7777).toBe(0o640);
    expect((await t.readFile(binPath('/etc/hosts')))?.toString()).toBe('127.0.0.1 image\n');
    const resolv = t.lookup(binPath('/etc/resolv.conf'), { followLast: false });
    expect(resolv?.kind === 'symlink' && resolv.target).toBe('../run/resolv.conf');
    for (const gone of ['/etc/hostname', '/etc/mtab', '/.dockerenv', '/dev/console'])
      expect(t.lookup(binPath(gone), { followLast: false }), gone).toBeUndefined();
  });

  it.each([
    ['an absolute symlink', (host: string) => host],
    ['a relative symlink climbing out of the layer directory', () => '../host-etc'],
  ])('never reads a host file through /etc being %s', async (_, target) => {
    const host = await hostDir();
    const lower = join(tmp, 'l1');
    await mkdir(lower);
    await symlink(target(host), join(lower, 'etc'));
    await mkdir(join(lower, 'dev'));
    const upper = join(tmp, 'u');
    await mkdir(upper);
    const events: Img2vmEvent[] = [];
    const t = exportTree();
    await initLayerFixup(overlay(upper, [lower]), (e) => events.push(e))(t, { warnLost: true });
    expect(await allContent(t)).not.toContain(MARKER);
    // The image has no /etc/hosts: its /etc is a symlink, which comes back in place of Docker's directory.
    const etc = t.lookup(binPath('/etc'), { followLast: false });
    expect(etc?.kind === 'symlink' && etc.target).toBe(target(host));
    expect(events).toEqual([]);
  });

  it('a symlinked parent in an upper layer hides the lower layer files below it, and is never followed', async () => {
    const host = await hostDir();
    const lower = join(tmp, 'l1');
    await mkdir(join(lower, 'etc'), { recursive: true });
    await writeFile(join(lower, 'etc', 'hosts'), 'lower hosts\n');
    const upper = join(tmp, 'u');
    await mkdir(upper);
    await symlink(host, join(upper, 'etc'));
    const t = exportTree();
    await initLayerFixup(overlay(upper, [lower]))(t, { warnLost: true });
    expect(await allContent(t)).not.toContain(MARKER);
    expect(await allContent(t)).not.toContain('lower hosts');
  });

  it('a symlink to a host directory in a deeper parent (/dev) is not followed either', async () => {
    const host = await hostDir();
    await writeFile(join(host, 'console'), `${MARKER} console\n`);
    const lower = join(tmp, 'l1');
    await mkdir(join(lower, 'etc'), { recursive: true });
    await symlink(host, join(lower, 'dev'));
    const upper = join(tmp, 'u');
    await mkdir(upper);
    const t = exportTree();
    await initLayerFixup(overlay(upper, [lower]))(t, { warnLost: true });
    expect(await allContent(t)).not.toContain(MARKER);
    const dev = t.lookup(binPath('/dev'), { followLast: false });
    expect(dev?.kind === 'symlink' && dev.target).toBe(host);
  });
});
