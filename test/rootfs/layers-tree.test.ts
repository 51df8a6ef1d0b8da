// The in-root resolver and tree editing API img2vm uses after flattening: writes replace entries (never through symlinks), reads follow them inside the root.
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { binPath, lookup, MAX_SYMLINKS, realPath, resolvePath, splitPath } from '../../src/rootfs/tree-path.js';
import { treeStats } from '../../src/rootfs/tree-stats.js';
import type { DirNode, FileNode } from '../../src/rootfs/tree.js';
import { makeTar } from './helpers.js';
import { EPOCH, expectExactRefs, flattenLayers, paths, text } from './layers-helpers.js';

function fresh(): { tree: RootTree; store: MemoryStore } {
  const store = new MemoryStore();
  return { tree: new RootTree({ store, epoch: EPOCH }), store };
}

describe('resolvePath', () => {
  it('splits like the kernel: empty, "." and repeated slashes vanish, ".." stays for the walk', () => {
    expect(splitPath('//a/./b//../c/')).toEqual(['a', 'b', '..', 'c']);
    expect(splitPath('')).toEqual([]);
  });

  it('reports the real directories walked and the name, or why it stopped', () => {
    const { tree } = fresh();
    tree.writeFile('usr/lib/x', 'x', { mode: 0o644 });
    tree.symlink('lib', 'usr/lib');
    tree.writeFile('file', 'f', { mode: 0o644 });
    const r = resolvePath(tree.root, 'lib/x');
    expect(r.ok && realPath(r)).toBe('usr/lib/x');
    expect(r.ok && r.names).toEqual(['usr', 'lib']);
    expect(r.ok && r.dirs[0]).toBe(tree.root);
    expect(resolvePath(tree.root, 'lib/nope/y')).toEqual({ ok: false, reason: 'missing', at: 'usr/lib/nope' });
    expect(resolvePath(tree.root, 'file/y')).toEqual({ ok: false, reason: 'notDir', at: 'file' });
    const dotdot = resolvePath(tree.root, 'lib/..');
    expect(dotdot.ok && dotdot.name === null && dotdot.node === lookup(tree.root, 'usr')).toBe(true);
    expect(lookup(tree.root, 'lib', { followLast: false })?.kind).toBe('symlink');
    expect(lookup(tree.root, 'lib')?.kind).toBe('dir');
  });

  it('a dangling or looping final symlink reads as missing or as an error', () => {
    const { tree } = fresh();
    tree.symlink('dangling', '/no/where');
    tree.symlink('a', 'b');
    tree.symlink('b', 'a');
    expect(lookup(tree.root, 'dangling')).toBeUndefined();
    expect(() => lookup(tree.root, 'a')).toThrow(new RegExp(`too many levels of symbolic links`));
    expect(MAX_SYMLINKS).toBe(40);
  });
});

describe('RootTree writes', () => {
  it('writeFile makes missing parents at the epoch and replaces a symlink instead of writing through it', async () => {
    const r = await flattenLayers([
      await makeTar([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/shadow', content: 'root:secret' },
        { name: 'etc/hostname', type: 'symlink', linkname: '/etc/shadow' },
      ]),
    ]);
    r.tree.writeFile(binPath('/etc/hostname'), 'box\n', { mode: 0o644 });
    r.tree.writeFile(binPath('/etc/systemd/network/10-eth.network'), '[Match]\n', {
      mode: 0o644,
      mtime: { sec: 5, nsec: 6 },
    });
    expect(await text(r.root, 'etc/hostname')).toBe('box\n');
    expect(await text(r.root, 'etc/shadow')).toBe('root:secret');
    expect(paths(r.root)).toContain('etc/systemd dir');
    expect(r.tree.lookup('/etc/systemd')?.meta).toEqual({
      mode: 0o755,
      uid: 0,
      gid: 0,
      mtime: EPOCH,
      xattrs: new Map(),
    });
    expect(r.tree.lookup('/etc/systemd/network/10-eth.network')?.meta.mtime).toEqual({ sec: 5, nsec: 6 });
    expectExactRefs(r);
  });

  it('writing through a symlinked parent lands inside the root, where it points', async () => {
    const { tree } = fresh();
    tree.symlink('etc', '/../../real-etc');
    tree.writeFile('/etc/fstab', 'x', { mode: 0o644 });
    expect(paths(tree.root)).toEqual(['etc symlink → /../../real-etc', 'real-etc dir', 'real-etc/fstab file']);
  });

  it('a hard-linked file is unlinked, not changed in place', async () => {
    const r = await flattenLayers([
      await makeTar([
        { name: 'etc/passwd', content: 'old' },
        { name: 'etc/passwd-', type: 'link', linkname: 'etc/passwd' },
      ]),
    ]);
    const before = r.tree.lookup('/etc/passwd-')!;
    expect(r.tree.nameCount(before)).toBe(2);
    r.tree.writeFile('/etc/passwd', 'new', { mode: 0o644 });
    expect(await text(r.root, 'etc/passwd')).toBe('new');
    expect(await text(r.root, 'etc/passwd-')).toBe('old');
    expect(r.tree.nameCount(before)).toBe(1);
    expectExactRefs(r);
    expect(treeStats(r.tree).hardlinks).toBe(0);
  });

  it('writing over a directory replaces its whole tree and releases its files', async () => {
    const r = await flattenLayers([
      await makeTar([
        { name: 'd/a', content: 'a' },
        { name: 'd/sub/b', content: 'b' },
      ]),
    ]);
    r.tree.writeFile('d', 'now a file', { mode: 0o600 });
    expect(paths(r.root)).toEqual(['d file']);
    expect(r.store.liveCount).toBe(1);
    expectExactRefs(r);
  });

  it('writing a path below a file, or the root itself, is a clear error', () => {
    const { tree } = fresh();
    tree.writeFile('f', 'f', { mode: 0o644 });
    expect(() => tree.writeFile('f/x', 'x', { mode: 0o644 })).toThrow(Img2vmError);
    expect(() => tree.writeFile('/', 'x', { mode: 0o644 })).toThrow(/names a directory/);
  });

  it('mkdirp follows symlinks (the last too), keeps an existing directory, refuses a file', () => {
    const { tree } = fresh();
    const lib = tree.mkdirp('usr/lib', { mode: 0o700 });
    tree.symlink('lib', 'usr/lib');
    expect(tree.mkdirp('lib')).toBe(lib);
    expect(lib.meta.mode).toBe(0o700);
    expect(tree.mkdirp('lib/systemd/system').meta.mtime).toEqual(EPOCH);
    tree.writeFile('f', 'f', { mode: 0o644 });
    expect(() => tree.mkdirp('f')).toThrow(/exists and is not a directory/);
    expect(paths(tree.root)).toEqual([
      'f file',
      'lib symlink → usr/lib',
      'usr dir',
      'usr/lib dir',
      'usr/lib/systemd dir',
      'usr/lib/systemd/system dir',
    ]);
  });

  it('link makes the same node; remove drops one name and releases content with the last', () => {
    const { tree, store } = fresh();
    const f = tree.writeFile('a', 'x', { mode: 0o644 });
    expect(tree.link('b', 'a')).toBe(f);
    expect(tree.nameCount(f)).toBe(2);
    expect(() => tree.link('c', '/')).toThrow(/is a directory/);
    expect(() => tree.link('c', 'missing')).toThrow(/does not exist/);
    tree.mkdirp('d');
    tree.writeFile('d/in', 'i', { mode: 0o644 });
    expect(() => tree.link('d', 'd/in')).toThrow(/inside the directory/);
    expect(tree.remove('a')).toBe(true);
    expect(store.liveCount).toBe(2);
    expect(tree.remove('b')).toBe(true);
    expect(store.liveCount).toBe(1);
    expect(tree.remove('b')).toBe(false);
  });

  it('readFile follows symlinks inside the root and bounds what it reads', async () => {
    const { tree } = fresh();
    tree.writeFile('usr/lib/os-release', 'ID=debian\n', { mode: 0o644 });
    tree.symlink('etc/os-release', '../usr/lib/os-release');
    tree.symlink('escape', '../../../../etc/os-release');
    expect((await tree.readFile('/etc/os-release'))?.toString()).toBe('ID=debian\n');
    expect((await tree.readFile('/escape'))?.toString()).toBe('ID=debian\n');
    expect(await tree.readFile('/usr')).toBeUndefined();
    expect(await tree.readFile('/nope')).toBeUndefined();
    tree.writeFile('big', Buffer.alloc(2000), { mode: 0o644 });
    await expect(tree.readFile('big', { maxBytes: 1000 })).rejects.toThrow(/2000 bytes; more than 1000/);
  });

  it('an adopted tree has its names counted by identity', () => {
    const store = new MemoryStore();
    const data = store.putBuffer(Buffer.from('x'));
    const f: FileNode = {
      kind: 'file',
      meta: { mode: 0o644, uid: 0, gid: 0, mtime: EPOCH, xattrs: new Map() },
      size: 1,
      data,
    };
    const sub: DirNode = {
      kind: 'dir',
      meta: { mode: 0o755, uid: 0, gid: 0, mtime: EPOCH, xattrs: new Map() },
      entries: new Map([['g', f]]),
    };
    const root: DirNode = {
      kind: 'dir',
      meta: { ...sub.meta },
      entries: new Map<string, FileNode | DirNode>([
        ['f', f],
        ['sub', sub],
      ]),
    };
    const tree = new RootTree({ store, epoch: EPOCH, root });
    expect(tree.nameCount(f)).toBe(2);
    expect(treeStats(tree)).toMatchObject({ files: 1, hardlinks: 1, dirs: 1 });
    tree.remove('sub');
    expect(store.liveCount).toBe(1);
    tree.remove('f');
    expect(store.liveCount).toBe(0);
  });
});
