// Extended attributes: in the inode first, then one block; name prefixes; POSIX ACLs in ext4's format; clear refusals.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ext4Writer } from '../../../src/disk/ext4/index.js';
import { RawFileTarget } from '../../../src/disk/target.js';
import type { Node } from '../../../src/rootfs/tree.js';
import { debugfs, dir, EPOCH, expectClean, file, meta, SEED, tmp, UUID, writeImage, expectFailure } from './helpers.js';
import { readTree, type ReadTree } from './readback.js';

const t = tmp();
afterAll(() => t.done());

/** A POSIX ACL in the xattr format (version 2): [tag, perm, id] entries. */
function acl(entries: Array<[number, number, number]>): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(id >>> 0, 8 + 8 * i);
  });
  return b;
}

const U = 0xffffffff;

/** debugfs converts ACLs back with id 0 in the entries that have none (the kernel says -1). */
function debugfsView(x: Buffer): Buffer {
  const b = Buffer.from(x);
  for (let o = 4; o < b.length; o += 8) if (![2, 8].includes(b.readUInt16LE(o))) b.writeUInt32LE(0, o + 4);
  return b;
}
const ACCESS = acl([
  [1, 7, U],
  [2, 5, 1000],
  [4, 5, U],
  [8, 4, 2000],
  [0x10, 7, U],
  [0x20, 0, U],
]);
const DEFAULT = acl([
  [1, 7, U],
  [4, 5, U],
  [0x20, 5, U],
]);
// security.capability v2: cap_net_bind_service permitted+effective.
const CAP = Buffer.from('0100000200040000000000000000000000000000', 'hex');
const SELINUX = Buffer.from('system_u:object_r:bin_t:s0\0');

const sets: Record<string, Map<string, Buffer>> = {
  small: new Map([
    ['user.a', Buffer.from('1')],
    ['user.empty', Buffer.alloc(0)],
  ]),
  cap: new Map([['security.capability', CAP]]),
  both: new Map([
    ['security.capability', CAP],
    ['security.selinux', SELINUX],
    ['trusted.overlay.opaque', Buffer.from('y')],
  ]),
  spill: new Map(
    Array.from({ length: 12 }, (_, i): [string, Buffer] => [`user.attr${i}`, Buffer.alloc(200 + i, 0x41 + i)]),
  ),
  binary: new Map([
    ['user.bin', Buffer.from([0, 1, 2, 255, 254, 0, 10])],
    ['user.big', Buffer.alloc(3900, 0x7e)],
  ]),
};

let img: string;
let tree: ReadTree;
beforeAll(async () => {
  img = t.path('xattr.img');
  await writeImage(img, (w) => {
    const entries: Record<string, Node> = {};
    for (const [name, x] of Object.entries(sets))
      entries[name] = file(w.putBuffer(Buffer.from(name)), name.length, meta(0o644, { xattrs: x }));
    entries.acldir = dir(
      {},
      meta(0o775, {
        xattrs: new Map([
          ['system.posix_acl_access', ACCESS],
          ['system.posix_acl_default', DEFAULT],
        ]),
      }),
    );
    entries.capsym = {
      kind: 'symlink',
      meta: meta(0o777, { xattrs: new Map([['security.selinux', SELINUX]]) }),
      target: 'cap',
    };
    entries.capdev = { kind: 'char', meta: meta(0o600, { xattrs: sets.spill! }), major: 1, minor: 5 };
    return dir(
      entries,
      meta(0o755, { xattrs: new Map([['security.selinux', Buffer.from('system_u:object_r:root_t:s0\0')]]) }),
    );
  });
  tree = readTree(img, t.dir);
});

function at(path: string): NonNullable<ReturnType<ReadTree['inodes']['get']>> {
  const e = tree.entries.find((x) => x.path === path);
  if (!e) throw new Error(`${path} missing`);
  return tree.inodes.get(e.ino)!;
}

describe('extended attributes', () => {
  it('e2fsck checks every entry, hash and block checksum and finds nothing', () => expectClean(img));

  it('read back exactly, on files, directories, symlinks, devices and the root', () => {
    for (const [name, x] of Object.entries(sets)) expect(at(`/${name}`).xattrs, name).toEqual(x);
    expect(at('/capsym').xattrs).toEqual(new Map([['security.selinux', SELINUX]]));
    expect(at('/capdev').xattrs).toEqual(sets.spill);
    expect(tree.inodes.get(2)!.xattrs.get('security.selinux')?.toString()).toBe('system_u:object_r:root_t:s0\0');
  });

  it('go into the inode while they fit and into one block after that', () => {
    expect(at('/small').fileAcl).toBe(0);
    expect(at('/cap').fileAcl).toBe(0);
    expect(at('/spill').fileAcl).not.toBe(0);
    expect(at('/spill').blockcount).toBe(16); // one data block and the xattr block
    expect(at('/binary').fileAcl).not.toBe(0);
    // Sorted by (prefix, name length, name): the trusted one and selinux fill the 88 bytes of the
    // inode exactly; the capability goes to the block.
    const raw = debugfs(img, 'inode_dump -x /both');
    expect(raw).toMatch(/name = overlay\.opaque/);
    expect(raw).toMatch(/name = selinux/);
    expect(raw).not.toMatch(/capability/);
    expect(at('/both').fileAcl).not.toBe(0);
  });

  it('store POSIX ACLs in ext4 format and give them back in the xattr format', () => {
    const d = at('/acldir');
    expect(d.xattrs.get('system.posix_acl_access')).toEqual(debugfsView(ACCESS));
    expect(d.xattrs.get('system.posix_acl_default')).toEqual(debugfsView(DEFAULT));
    const disk = debugfs(img, 'ea_get -r -x /acldir system.posix_acl_access');
    const hex =
      '01000000' + '01000700' + '02000500e8030000' + '04000500' + '08000400d0070000' + '10000700' + '20000000';
    expect(disk.replace(/ /g, '')).toContain(`(36)=${hex}`);
  });
});

describe('xattrs that cannot be stored', () => {
  async function finish(x: Map<string, Buffer>): Promise<unknown> {
    const target = new RawFileTarget(t.path('bad.img'));
    const w = new Ext4Writer({ target, offset: 0, uuid: UUID, label: '', hashSeed: SEED, epoch: EPOCH });
    try {
      const root = dir({
        etc: dir({ 'too\xc3\xa9much': file(w.putBuffer(Buffer.from('x')), 1, meta(0o644, { xattrs: x })) }),
      });
      return await w.finish(root, { sizeBytes: 32 << 20, inodeCount: 1024 }).catch((e: unknown) => e);
    } finally {
      target.close();
    }
  }

  it('are a badImage error naming the file', async () => {
    const big = new Map(Array.from({ length: 30 }, (_, i): [string, Buffer] => [`user.x${i}`, Buffer.alloc(200)]));
    expectFailure(
      await finish(big),
      'badImage',
      /extended attributes of \/etc\/tooémuch take \d+ bytes, more than fit/,
    );
    expectFailure(await finish(new Map([['user.one', Buffer.alloc(5000)]])), 'badImage', /\/etc\/tooémuch/);
    expectFailure(await finish(new Map([['os2.name', Buffer.from('x')]])), 'badImage', /namespace ext4 does not store/);
    expectFailure(
      await finish(new Map([['system.posix_acl_access', Buffer.from('nonsense')]])),
      'badImage',
      /not a POSIX ACL/,
    );
    expectFailure(
      await finish(new Map([[`user.${'n'.repeat(256)}`, Buffer.from('x')]])),
      'badImage',
      /longer than 255/,
    );
  });
});
