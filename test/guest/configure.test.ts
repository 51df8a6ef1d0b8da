// The guest settings every strategy plans (fstab, the root password as written into the tree), and GRUB's module copy into a hostile tree.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { baseGuestFiles, passwordShadow } from '../../src/guest/configure.js';
import { createRandom } from '../../src/core/random.js';
import { sha512Crypt } from '../../src/guest/credentials.js';

let tmp: string;

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-cfg-'));
});
afterEach(() => rm(tmp, { recursive: true, force: true }));

describe('the guest settings', () => {
  it("fstab names the root (and /boot and the ESP) by UUID; the root's password hashes into shadow, the other entries kept, the group Debian's shadow", () => {
    const files = baseGuestFiles({ rootUuid: 'UUID-1', espUuid: 'AB12-CD34', password: true }, 'guest');
    expect(files.find((f) => f.path === '/etc/fstab')?.content).toContain('UUID=UUID-1\t/\text4');
    expect(files.find((f) => f.path === '/etc/fstab')?.content).toContain('UUID=AB12-CD34\t/boot/efi\tvfat');
    expect(files.map((f) => `${f.kind} ${f.path}`)).toEqual(['file /etc/fstab', 'dir /boot/efi', 'remove /.dockerenv']);
    const { content, gid } = passwordShadow(
      'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n',
      'root:x:0:\nshadow:x:42:\n',
      'pw',
      createRandom('t'),
      86400 * 20000,
    );
    const m = /^root:(\$6\$([^$]+)\$[^:]+):20000:/m.exec(content)!;
    expect(sha512Crypt('pw', m[2]!)).toBe(m[1]);
    expect(content).toContain('daemon:*:19000');
    expect(gid).toBe(42);
  });
});

describe('GRUB module directories in a hostile root', () => {
  it('never copies through symlinks the image planted at /boot or inside /boot/grub', async () => {
    const { GRUB_PC_DIR } = await import('../../src/boot/grub-bios.js');
    const { grubModulesCopy } = await import('../../src/boot/grub-config.js');
    const { RootTree } = await import('../../src/rootfs/tree-edit.js');
    const { MemoryStore } = await import('../../src/rootfs/memory-store.js');
    const { writeGuestFilesToTree } = await import('../../src/rootfs/tree-guest.js');
    const { binPath } = await import('../../src/rootfs/tree-path.js');
    const { existsSync } = await import('node:fs');
    expect(existsSync(GRUB_PC_DIR), `${GRUB_PC_DIR} is missing: install grub-pc-bin (scripts/install-deps.sh)`).toBe(
      true,
    );
    const tree = new RootTree({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });
    // /boot points at the root, and a module path points at a file elsewhere in the image
    tree.symlink(binPath('/boot'), binPath('/'));
    tree.writeFile(binPath('/outside/sentinel'), 'keep', { mode: 0o644 });
    tree.mkdirp(binPath('/grub/i386-pc'));
    tree.symlink(binPath('/grub/i386-pc/normal.mod'), binPath('/outside/sentinel'));
    const copy = grubModulesCopy(
      {
        rootUuid: 'u',
        bootFsUuid: 'u',
        separateBoot: false,
        grubDir: '/boot/grub',
        cmdline: '',
        title: 'T',
        kernel: null,
      },
      GRUB_PC_DIR,
      'i386-pc',
      'grub-bios',
    );
    await writeGuestFilesToTree(tree, [copy], async () => {}, tmp);
    expect((await tree.readFile(binPath('/outside/sentinel')))?.toString()).toBe('keep');
    // /boot re-rooted: the modules land at /grub/i386-pc, as real files, never through the planted link
    expect(tree.lookup(binPath('/grub/i386-pc/normal.mod'), { followLast: false })?.kind).toBe('file');
  });
});
