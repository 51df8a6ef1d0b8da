// Metadata from an archive GNU tar --xattrs made of real files (setfattr, touch, tar): nanosecond times, every xattr, ACL and capability.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flattenLayers, must, text } from './layers-helpers.js';

/** v2 capability, effective, permitted = cap_setuid (bit 7 → byte 0x80) + cap_net_raw (bit 13). */
const CAP = Buffer.from('0100000280200000000000000000000000000000', 'hex');
/** user::rw- user:1234:r-- group::r-- mask::r-- other::r-- in the xattr format. */
const ACL = Buffer.from(
  '0200000001000600ffffffff02000400d204000004000400ffffffff10000400ffffffff20000400ffffffff',
  'hex',
);

describe('an archive made by GNU tar --xattrs from real files', () => {
  it('carries nanosecond times and every xattr, ACL and capability included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'img2vm-gnutar-'));
    try {
      const src = join(dir, 'src');
      mkdirSync(join(src, 'd'), { recursive: true });
      const f = join(src, 'd', 'f');
      writeFileSync(f, 'hi\n');
      const sh = (cmd: string, args: string[]): void => {
        try {
          execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        } catch (e) {
          throw new Error(
            `${cmd} ${args.join(' ')} failed (setfattr is in the attr package, tar in tar): ${String((e as { stderr?: Buffer }).stderr ?? e)}`,
          );
        }
      };
      sh('setfattr', ['-n', 'user.foo', '-v', 'bar', f]);
      sh('setfattr', ['-n', 'user.bin', '-v', '0x00ff80', f]);
      sh('setfattr', ['-n', 'trusted.t', '-v', 'x', f]);
      sh('setfattr', ['-n', 'security.capability', '-v', `0x${CAP.toString('hex')}`, f]);
      sh('setfattr', ['-n', 'system.posix_acl_access', '-v', `0x${ACL.toString('hex')}`, f]);
      sh('touch', ['-h', '-d', '2023-11-14 22:13:20.123456789 UTC', f]);
      const out = join(dir, 'layer.tar');
      sh('tar', [
        '--format=posix',
        '--xattrs',
        '--xattrs-include=*',
        '--acls',
        '--numeric-owner',
        '-C',
        src,
        '-cf',
        out,
        'd',
      ]);
      const { root, warnings } = await flattenLayers([readFileSync(out)]);
      expect(warnings).toEqual([]);
      const node = must(root, 'd/f');
      expect(await text(root, 'd/f')).toBe('hi\n');
      expect(node.meta.mtime).toEqual({ sec: 1700000000, nsec: 123456789 });
      expect(node.meta.atime).toBeDefined();
      expect(node.meta.ctime).toBeDefined();
      expect(new Map([...node.meta.xattrs].sort())).toEqual(
        new Map([
          ['security.capability', CAP],
          ['system.posix_acl_access', ACL],
          ['trusted.t', Buffer.from('x')],
          ['user.bin', Buffer.from([0, 0xff, 0x80])],
          ['user.foo', Buffer.from('bar')],
        ]),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
