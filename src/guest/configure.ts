// The guest settings every strategy plans as data: fstab, the ESP's mount point, no container marker, and the root
// password (its hash made only when the tree is written).
import type { GuestFile } from '../core/plan.js';
import type { Random } from '../core/random.js';
import { makeSalt, passwordChangeDays, setRootPassword, sha512Crypt } from './credentials.js';

export function renderFstab(rootUuid: string, bootUuid?: string, espUuid?: string): string {
  return [
    '# Written by img2vm',
    `UUID=${rootUuid}\t/\text4\terrors=remount-ro\t0\t1`,
    ...(bootUuid ? [`UUID=${bootUuid}\t/boot\text4\tdefaults\t0\t2`] : []),
    // nofail: a disk converted for BIOS only boots fine without it
    ...(espUuid ? [`UUID=${espUuid}\t/boot/efi\tvfat\tumask=0077,nofail\t0\t2`] : []),
    '',
  ].join('\n');
}

export interface BaseSettings {
  rootUuid: string;
  bootUuid?: string;
  /** FAT volume id of the ESP as blkid shows it (XXXX-XXXX), mounted at /boot/efi. */
  espUuid?: string;
  /** True when a root password is set (the hash itself is made when the file is written). */
  password: boolean;
}

/** What every strategy writes: fstab, the ESP's mount point, no container marker, and the root password. */
export function baseGuestFiles(s: BaseSettings, by: string): GuestFile[] {
  return [
    {
      kind: 'file',
      path: '/etc/fstab',
      fs: 'root',
      mode: 0o644,
      content: renderFstab(s.rootUuid, s.bootUuid, s.espUuid),
      by,
    },
    ...(s.espUuid ? [{ kind: 'dir', path: '/boot/efi', fs: 'root', mode: 0o755, by } as GuestFile] : []),
    // Docker leaves this marker in some images; inside a VM it would make systemd think it runs in a container.
    { kind: 'remove', path: '/.dockerenv', fs: 'root', by },
  ];
}

/** The root password, set in the image's own /etc/shadow (the hash is made when the file is written). */
export function passwordEdit(password: boolean, by: string): GuestFile[] {
  return password
    ? [{ kind: 'edit', path: '/etc/shadow', fs: 'root', mode: 0o640, note: "root's password (SHA-512 crypt)", by }]
    : [];
}

/** /etc/shadow with root's password set (SHA-512 crypt), and the group that owns the file (Debian's shadow). */
export function passwordShadow(
  shadow: string,
  group: string,
  password: string,
  random: Random,
  epochSeconds: number,
): { content: string; gid: number } {
  const hash = sha512Crypt(password, makeSalt(random));
  const gid = /^shadow:[^:]*:(\d+):/m.exec(group)?.[1];
  return { content: setRootPassword(shadow, hash, passwordChangeDays(epochSeconds)), gid: gid ? Number(gid) : 0 };
}
