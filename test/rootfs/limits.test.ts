// The caps of rootfs/limits.ts at their real values, negative header numbers, and the metadata the tree shares to stay small.
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { layoutXattrs } from '../../src/disk/ext4/xattr.js';
import { MAX_ENTRY_XATTR_BYTES, MAX_EXTENDED_HEADER_BYTES, xattrDiskBytes } from '../../src/rootfs/limits.js';
import { NO_XATTRS } from '../../src/rootfs/tree.js';
import { detachBoot } from '../../src/rootfs/tree-guest.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { binPath } from '../../src/rootfs/tree-path.js';
import type { DirNode } from '../../src/rootfs/tree.js';
import { makeTar, padTo512, paxEntry, rawHeader, setBase256, TAR_END } from './helpers.js';
import { bytes, EPOCH, flattenLayers, must } from './layers-helpers.js';

async function refused(layers: Buffer[]): Promise<Img2vmError> {
  const e = await flattenLayers(layers).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(Img2vmError);
  expect((e as Img2vmError).kind).toBe('badImage');
  expect((e as Img2vmError).hint).toBeTruthy();
  return e as Img2vmError;
}

describe('negative base-256 numbers in a header are a damaged layer', () => {
  it('a negative size is "layer is corrupt", not an internal error', async () => {
    const neg = setBase256(rawHeader({ name: 'neg' }), 124, 12, -2n);
    const e = await refused([Buffer.concat([neg, TAR_END])]);
    expect(e.message).toMatch(/^layer is corrupt: .*"neg" has a negative size: size -2/);
  });

  it('a negative mode, uid, gid or device number likewise', async () => {
    for (const [off, what] of [
      [100, 'mode'],
      [108, 'uid'],
      [116, 'gid'],
      [329, 'devmajor'],
      [337, 'devminor'],
    ] as const) {
      const h = setBase256(rawHeader({ name: `dev/${what}`, typeflag: '3' }), off, 8, -1n);
      const e = await refused([Buffer.concat([h, TAR_END])]);
      expect(e.message, what).toMatch(new RegExp(`layer is corrupt: .*negative ${what}: ${what} -1`));
    }
  });

  it('a negative mtime (before 1970) is a time, not damage', async () => {
    const h = setBase256(rawHeader({ name: 'old', size: 2 }), 136, 12, -86400n);
    const { root } = await flattenLayers([Buffer.concat([h, padTo512(Buffer.from('ok')), TAR_END])]);
    expect(must(root, 'old').meta.mtime).toEqual({ sec: -86400, nsec: 0 });
    expect(await bytes(root, 'old')).toEqual(Buffer.from('ok'));
  });
});

describe('MAX_EXTENDED_HEADER_BYTES', () => {
  const filler = (n: number): Array<[string, string]> => [['comment', 'c'.repeat(n)]];

  it('an entry whose PAX header is at the limit is read; one byte more is refused, naming the limit', async () => {
    // The "path" record for "f" is 9 bytes; a comment record of n bytes of text is n + 17 (7 digits of length).
    const at = paxEntry('f', Buffer.from('x'), '0', filler(MAX_EXTENDED_HEADER_BYTES - 9 - 17));
    const { root } = await flattenLayers([Buffer.concat([at, TAR_END])]);
    expect(await bytes(root, 'f')).toEqual(Buffer.from('x'));
    const over = paxEntry('f', Buffer.from('x'), '0', filler(MAX_EXTENDED_HEADER_BYTES - 9 - 17 + 1));
    const e = await refused([Buffer.concat([over, TAR_END])]);
    expect(e.message).toMatch(/PAX header of 1048577 bytes .*the limit MAX_EXTENDED_HEADER_BYTES is 1,048,576/);
  });

  it('consecutive PAX headers of one entry add up', async () => {
    const half = paxEntry('f', Buffer.from('x'), '0', filler(600 * 1024));
    const xOnly = half.subarray(0, half.length - 1024); // the 'x' header and its records, without the entry
    const e = await refused([Buffer.concat([xOnly, half, TAR_END])]);
    expect(e.message).toMatch(/MAX_EXTENDED_HEADER_BYTES/);
  });

  it('a GNU long name over the limit is refused before it is read', async () => {
    const h = rawHeader({ name: '././@LongLink', typeflag: 'L', size: 64 * 1024 * 1024, gnu: true });
    const e = await refused([Buffer.concat([h, TAR_END])]);
    expect(e.message).toMatch(/GNU long name of 67108864 bytes.*MAX_EXTENDED_HEADER_BYTES/);
  });
});

describe('MAX_ENTRY_XATTR_BYTES', () => {
  it('is what ext4 holds: every set of attributes up to it lays out in the inode and one block', () => {
    // Sets of 1 to 40 attributes with names and values of random lengths, each grown to the limit.
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 300; round++) {
      const m = new Map<string, Buffer>();
      const count = 1 + rnd(40);
      let total = 0;
      for (let i = 0; i < count; i++) {
        const ns = ['user.', 'trusted.', 'security.'][rnd(3)]!;
        const name = `${ns}${'n'.repeat(1 + rnd(30))}${i}`;
        const value = Buffer.alloc(rnd(200), 0x61);
        if (total + xattrDiskBytes(name, value) > MAX_ENTRY_XATTR_BYTES) break;
        m.set(name, value);
        total += xattrDiskBytes(name, value);
      }
      // The last attribute takes whatever room is left.
      const room = MAX_ENTRY_XATTR_BYTES - total - xattrDiskBytes('user.last', Buffer.alloc(0));
      if (room >= 0) m.set('user.last', Buffer.alloc(room & ~3, 0x62));
      expect(() => layoutXattrs(m, () => 'f')).not.toThrow();
    }
  });

  it('an entry over it is refused as it is read, naming the limit; at it, it is kept', async () => {
    // 16 bytes of entry, "big" padded to 4, the value: exactly the limit.
    const value = 'v'.repeat(MAX_ENTRY_XATTR_BYTES - 16 - 4);
    const ok = await flattenLayers([
      await makeTar([{ name: 'f', content: 'x', pax: { 'SCHILY.xattr.user.big': value } }]),
    ]);
    expect(must(ok.root, 'f').meta.xattrs.get('user.big')?.length).toBe(value.length);
    const e = await refused([
      await makeTar([{ name: 'f', content: 'x', pax: { 'SCHILY.xattr.user.big': `${value}vvvv` } }]),
    ]);
    expect(e.message).toMatch(
      /extended attributes of "f" take 4064 bytes in ext4.*the limit MAX_ENTRY_XATTR_BYTES is 4,060/,
    );
  });

  it('counts what a hard link adds to its target', async () => {
    const value = 'v'.repeat(3000);
    const e = await refused([
      await makeTar([
        { name: 'f', content: 'x', pax: { 'SCHILY.xattr.user.a': value } },
        { name: 'g', type: 'link', linkname: 'f', pax: { 'SCHILY.xattr.user.b': value } },
      ]),
    ]);
    expect(e.message).toMatch(/MAX_ENTRY_XATTR_BYTES/);
  });
});

describe('metadata is shared between entries, and cannot be changed through one of them', () => {
  it('files with the same owner, mode, time and xattrs share one frozen metadata object and one xattr map', async () => {
    const x = { 'SCHILY.xattr.security.selinux': 'system_u:object_r:usr_t:s0' };
    const { root } = await flattenLayers([
      await makeTar([
        { name: 'a', content: '1', pax: x },
        { name: 'b', content: '2', pax: x },
        { name: 'c', content: '3' },
        { name: 'd', content: '4' },
        { name: 'e', content: '5', mode: 0o600 },
      ]),
    ]);
    const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((p) => must(root, p).meta);
    expect(a).toBe(b);
    expect(c).toBe(d);
    expect(e).not.toBe(c);
    expect(c!.xattrs).toBe(NO_XATTRS);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a!.mtime)).toBe(true);
    expect(() => a!.xattrs.set('user.x', Buffer.from('1'))).toThrow(TypeError);
    expect(() => NO_XATTRS.set('user.x', Buffer.from('1'))).toThrow(TypeError);
    expect(NO_XATTRS.size).toBe(0);
  });

  it('an xattr a hard link adds reaches every name of the file, and no other file with the same metadata', async () => {
    const { root } = await flattenLayers([
      await makeTar([
        { name: 'f', content: 'x' },
        { name: 'other', content: 'y' },
        { name: 'g', type: 'link', linkname: 'f', pax: { 'SCHILY.xattr.user.added': '1' } },
      ]),
    ]);
    expect(must(root, 'f')).toBe(must(root, 'g'));
    expect(must(root, 'f').meta.xattrs).toEqual(new Map([['user.added', Buffer.from('1')]]));
    expect(must(root, 'other').meta.xattrs.size).toBe(0);
  });

  it('a symlink has mode 0777 whatever its header says', async () => {
    const { root } = await flattenLayers([await makeTar([{ name: 's', type: 'symlink', linkname: 't', mode: 0o755 }])]);
    expect(must(root, 's').meta.mode).toBe(0o777);
  });
});

describe('the tree counts its names and their bytes exactly', () => {
  function walk(root: DirNode): { names: number; bytes: number } {
    let names = 0;
    let bytes = 0;
    const stack = [root];
    for (let d = stack.pop(); d; d = stack.pop()) {
      for (const [k, n] of d.entries) {
        names++;
        bytes += k.length + (n.kind === 'symlink' ? n.target.length : 0);
        if (n.kind === 'dir') stack.push(n);
      }
    }
    return { names, bytes };
  }

  it('through layers that add, replace, link, white out and make opaque', async () => {
    const { tree, root } = await flattenLayers([
      await makeTar([
        { name: 'a/b/c/f1', content: '1' },
        { name: 'a/b/c/f2', content: '2' },
        { name: 'a/s', type: 'symlink', linkname: '/a/b/c/f1' },
        { name: 'h', type: 'link', linkname: 'a/b/c/f1' },
        { name: 'd/x', content: 'x' },
      ]),
      await makeTar([
        { name: 'a/b/.wh.c', content: '' },
        { name: 'a/b/c/new', content: 'n' },
        { name: 'd/.wh..wh..opq', content: '' },
        { name: 'd/y', type: 'symlink', linkname: 'x'.repeat(300) },
        { name: 'h', content: 'replaced' },
      ]),
    ]);
    expect({ names: tree.entries, bytes: tree.nameBytes }).toEqual(walk(root));
    expect(tree.entries).toBe(8); // a, a/b, a/b/c, a/b/c/new, a/s, h, d, d/y
  });

  it('through the edits img2vm makes itself', () => {
    const tree = new RootTree({ store: new MemoryStore(), epoch: EPOCH });
    tree.writeFile(binPath('/etc/hostname'), 'vm\n', { mode: 0o644 });
    tree.symlink(binPath('/etc/localtime'), binPath('/usr/share/zoneinfo/UTC'));
    tree.link(binPath('/etc/hn'), binPath('/etc/hostname'));
    tree.mkdirp(binPath('/boot/grub'));
    tree.writeFile(binPath('/boot/grub/grub.cfg'), 'x', { mode: 0o644 });
    expect({ names: tree.entries, bytes: tree.nameBytes }).toEqual(walk(tree.root));
    detachBoot(tree);
    expect({ names: tree.entries, bytes: tree.nameBytes }).toEqual(walk(tree.root));
    tree.remove(binPath('/etc'));
    expect({ names: tree.entries, bytes: tree.nameBytes }).toEqual(walk(tree.root));
    const adopted = new RootTree({ store: tree.store, epoch: EPOCH, root: tree.root });
    expect({ names: adopted.entries, bytes: adopted.nameBytes }).toEqual(walk(tree.root));
  });
});

describe('the entry cap', () => {
  it('is 500,000 by default, which IMG2VM_MAX_ENTRIES raises; anything but a count is a usage error', async () => {
    const { maxEntriesFrom } = await import('../../src/rootfs/limits.js');
    expect(maxEntriesFrom(undefined)).toBe(500_000);
    expect(maxEntriesFrom('')).toBe(500_000);
    expect(maxEntriesFrom('2000000')).toBe(2_000_000);
    for (const bad of ['0', '-1', '1e6', 'lots', '99999999999'])
      expect(() => maxEntriesFrom(bad)).toThrow(/IMG2VM_MAX_ENTRIES=".*" is not a count of entries/);
  });
});
