// Metadata through the tree flattener: nanosecond and negative times, xattrs of every namespace with binary values, ACLs, as real writers emit them.
import { describe, expect, it } from 'vitest';
import { aclTextToXattr } from '../../src/rootfs/acl.js';
import { parsePaxTime, TarFormatError } from '../../src/rootfs/tar.js';
import { makeTar, padTo512, patchBytes, rawHeader, TAR_END } from './helpers.js';
import { flattenLayers, must } from './layers-helpers.js';

/** v2 capability, effective, permitted = cap_setuid (bit 7 → byte 0x80) + cap_net_raw (bit 13). */
const CAP = Buffer.from('0100000280200000000000000000000000000000', 'hex');
/** user::rw- user:1234:r-- group::r-- mask::r-- other::r-- in the xattr format. */
const ACL = Buffer.from(
  '0200000001000600ffffffff02000400d204000004000400ffffffff10000400ffffffff20000400ffffffff',
  'hex',
);

describe('PAX times', () => {
  it.each([
    ['1700000000.123456789', { sec: 1700000000, nsec: 123456789 }],
    ['1700000000', { sec: 1700000000, nsec: 0 }],
    ['1700000000.5', { sec: 1700000000, nsec: 500000000 }],
    ['1700000000.', { sec: 1700000000, nsec: 0 }],
    ['1.0000000019', { sec: 1, nsec: 1 }], // beyond nanoseconds: cut off, as Go does
    ['-1.5', { sec: -2, nsec: 500000000 }],
    ['-1', { sec: -1, nsec: 0 }],
    ['-0.000000001', { sec: -1, nsec: 999999999 }],
    ['-0', { sec: 0, nsec: 0 }],
  ])('%s', (s, want) => {
    expect(parsePaxTime(s)).toEqual(want);
  });

  it.each(['', '1e9', ' 1', '+1', '1.5.5', '0x10', '99999999999999999', 'NaN', '1.-5'])('refuses "%s"', (s) => {
    expect(() => parsePaxTime(s)).toThrow(TarFormatError);
  });

  it('mtime, atime and ctime reach the tree exactly; a bad one is a corrupt layer', async () => {
    const { root } = await flattenLayers([
      await makeTar([
        {
          name: 'f',
          content: 'x',
          pax: { mtime: '1700000000.123456789', atime: '1700000001.000000001', ctime: '1700000002.999999999' },
        },
        { name: 'old', content: 'x', pax: { mtime: '-86400.25' } },
        { name: 'd/', type: 'directory', pax: { mtime: '1234567890.000000042' } },
        { name: 'plain', content: 'x' },
      ]),
    ]);
    expect(must(root, 'f').meta).toMatchObject({
      mtime: { sec: 1700000000, nsec: 123456789 },
      atime: { sec: 1700000001, nsec: 1 },
      ctime: { sec: 1700000002, nsec: 999999999 },
    });
    expect(must(root, 'old').meta.mtime).toEqual({ sec: -86401, nsec: 750000000 });
    expect(must(root, 'd').meta.mtime).toEqual({ sec: 1234567890, nsec: 42 });
    expect(must(root, 'plain').meta.atime).toBeUndefined();
    const e = await flattenLayers([await makeTar([{ name: 'f', content: 'x', pax: { mtime: '1e9' } }])]).catch(
      (x: unknown) => x,
    );
    expect(e).toMatchObject({ kind: 'badImage', message: expect.stringMatching(/malformed PAX mtime/) });
  });

  it('a negative base-256 mtime in the header (before 1970)', async () => {
    const h = rawHeader({ name: 'neg', size: 1 });
    h.fill(0xff, 136, 148); // -1 in base-256
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const c of h) sum += c;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    const { root } = await flattenLayers([Buffer.concat([h, padTo512(Buffer.from('n')), TAR_END])]);
    expect(must(root, 'neg').meta.mtime).toEqual({ sec: -1, nsec: 0 });
  });
});

describe('xattrs', () => {
  it('keeps every namespace byte-exactly: binary capability, non-UTF-8 values and names, ACLs', async () => {
    const binary = Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x3d]);
    const tar = await makeTar([
      {
        name: 'usr/bin/ping',
        content: 'ELF',
        // The bits its access ACL gives (user::rw-, mask::r--, other::r--): an ACL beside another mode is the next describe's.
        mode: 0o4644,
        pax: {
          'SCHILY.xattr.security.capability': 'Q'.repeat(CAP.length),
          'SCHILY.xattr.user.bin': 'B'.repeat(binary.length),
          'SCHILY.xattr.system.posix_acl_access': 'A'.repeat(ACL.length),
        },
      },
      {
        name: 'data',
        content: 'x',
        uid: 1000,
        pax: {
          'SCHILY.xattr.user.comment': 'héllo',
          'SCHILY.xattr.trusted.odd name\twith tab': 'v',
          'SCHILY.xattr.security.selinux': 'system_u:object_r:bin_t:s0\0',
        },
      },
      {
        name: 'dir/',
        type: 'directory',
        pax: {
          'SCHILY.xattr.trusted.overlay.opaque': 'y',
          'SCHILY.xattr.system.posix_acl_default': 'D'.repeat(ACL.length),
        },
      },
      // bsdtar's form: percent-encoded name, base64 value
      { name: 'bsd', content: 'x', pax: { 'LIBARCHIVE.xattr.user.with%3Dequals%20space': binary.toString('base64') } },
    ]);
    let t = patchBytes(tar, 'Q'.repeat(CAP.length), CAP);
    t = patchBytes(t, 'B'.repeat(binary.length), binary);
    t = patchBytes(t, 'A'.repeat(ACL.length), ACL);
    t = patchBytes(t, 'D'.repeat(ACL.length), ACL);
    const { root, stats, warnings } = await flattenLayers([t]);
    expect(warnings).toEqual([]);
    expect(must(root, 'usr/bin/ping').meta).toMatchObject({ mode: 0o4644 });
    expect(must(root, 'usr/bin/ping').meta.xattrs).toEqual(
      new Map([
        ['security.capability', CAP],
        ['user.bin', binary],
        ['system.posix_acl_access', ACL],
      ]),
    );
    expect(must(root, 'data').meta.xattrs).toEqual(
      new Map([
        ['user.comment', Buffer.from('héllo')],
        ['trusted.odd name\twith tab', Buffer.from('v')],
        ['security.selinux', Buffer.from('system_u:object_r:bin_t:s0\0')],
      ]),
    );
    expect(must(root, 'dir').meta.xattrs).toEqual(
      new Map([
        ['trusted.overlay.opaque', Buffer.from('y')],
        ['system.posix_acl_default', ACL],
      ]),
    );
    expect(must(root, 'bsd').meta.xattrs).toEqual(new Map([['user.with=equals space', binary]]));
    expect(stats.xattrs).toBe(9);
  });

  it('user.* on a symlink or device node is dropped as the kernel would refuse it; security.* stays', async () => {
    const { root, warnings } = await flattenLayers([
      await makeTar([
        {
          name: 'ln',
          type: 'symlink',
          linkname: 'x',
          pax: { 'SCHILY.xattr.user.x': '1', 'SCHILY.xattr.security.selinux': 'l' },
        },
        { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, pax: { 'SCHILY.xattr.user.y': '2' } },
      ]),
    ]);
    expect(must(root, 'ln').meta.xattrs).toEqual(new Map([['security.selinux', Buffer.from('l')]]));
    expect(must(root, 'null').meta.xattrs.size).toBe(0);
    expect(warnings).toEqual([
      expect.stringMatching(/"user.x" of "ln": user xattrs exist only/),
      expect.stringMatching(/"user.y" of "null"/),
    ]);
  });

  it('a hard link entry adds its xattrs to the shared node', async () => {
    const { root } = await flattenLayers([
      await makeTar([
        { name: 'a', content: 'x', pax: { 'SCHILY.xattr.user.a': '1' } },
        { name: 'b', type: 'link', linkname: 'a', pax: { 'SCHILY.xattr.user.b': '2' } },
      ]),
    ]);
    expect(must(root, 'b')).toBe(must(root, 'a'));
    expect([...must(root, 'a').meta.xattrs.keys()]).toEqual(['user.a', 'user.b']);
  });

  it('text ACLs (SCHILY.acl.*) become the xattr, unless the archive carries the xattr too', async () => {
    const access = 'user::rw-\nuser:1234:r--\ngroup::r--\nmask::r--\nother::r--\n';
    const { root, warnings } = await flattenLayers([
      await makeTar([
        { name: 'f', content: 'x', pax: { 'SCHILY.acl.access': access } },
        { name: 'd/', type: 'directory', pax: { 'SCHILY.acl.default': 'user::rwx,group::r-x,other::---' } },
        {
          name: 'byname',
          content: 'x',
          pax: { 'SCHILY.acl.access': 'user::rw-\nuser:alice:r--\ngroup::r--\nmask::r--\nother::r--\n' },
        },
        {
          name: 'star',
          content: 'x',
          pax: { 'SCHILY.acl.access': 'user::rw-,user:alice:r--:1234,group::r--,mask::r--,other::r--' },
        },
      ]),
    ]);
    expect(must(root, 'f').meta.xattrs.get('system.posix_acl_access')).toEqual(ACL);
    expect(must(root, 'star').meta.xattrs.get('system.posix_acl_access')).toEqual(ACL);
    expect(must(root, 'd').meta.xattrs.get('system.posix_acl_default')).toEqual(
      Buffer.from('0200000001000700ffffffff04000500ffffffff20000000ffffffff', 'hex'),
    );
    expect(must(root, 'byname').meta.xattrs.size).toBe(0);
    expect(warnings).toEqual([
      expect.stringMatching(/access ACL of "byname": .*names user "alice" without a numeric id/),
    ]);
  });

  it('ACL text that the kernel would refuse is reported', () => {
    expect(aclTextToXattr('user::rw-,group::r--')).toMatch(/other::/);
    expect(aclTextToXattr('user::rw-,user:5:r--,group::r--,other::r--')).toMatch(/mask/);
    expect(aclTextToXattr('user::rwz,group::r--,other::r--')).toMatch(/permissions/);
    expect(aclTextToXattr('bogus::r--')).toMatch(/unknown tag/);
  });
});
