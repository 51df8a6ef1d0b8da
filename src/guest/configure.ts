// The per-conversion guest settings as data (fstab, hostname, root password, machine-id, DNS), and writing any
// planned guest files into the staged root through the one in-root resolver.
import { chownSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestFile, KernelFacts } from '../core/plan.js';
import type { Random } from '../core/random.js';
import { freshDirInRoot as freshDir, readInRoot as readIn, resolveInRoot as resolveIn, writeGuestFiles, writeInRoot as writeIn } from '../rootfs/inroot.js';
import { makeSalt, passwordChangeDays, setRootPassword, sha512Crypt } from './credentials.js';

/** Resolves a path inside root with chroot semantics (see rootfs/inroot.ts); the last component only with followLast. */
export async function resolveInRoot(root: string, path: string, followLast = false): Promise<string> {
  return resolveIn(root, path, followLast);
}

/** Writes a file inside root, replacing whatever entry was there (a symlink is replaced, never followed). */
export async function writeInRoot(root: string, path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  writeIn(root, path, content, mode);
}

export async function freshDirInRoot(root: string, path: string): Promise<string> {
  return freshDir(root, path);
}

export async function readInRoot(root: string, path: string): Promise<string | undefined> {
  return readIn(root, path);
}

export type KernelInfo = KernelFacts;

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Finds the newest kernel in /boot, preferring Debian's /vmlinuz and /initrd.img links that follow upgrades. */
export async function findKernel(root: string): Promise<KernelInfo | undefined> {
  let boot: string;
  try {
    boot = resolveIn(root, 'boot', true);
  } catch {
    return undefined;
  }
  let names: string[];
  try {
    names = readdirSync(boot);
  } catch {
    return undefined;
  }
  const versions = names.filter((n) => n.startsWith('vmlinuz-')).map((n) => n.slice('vmlinuz-'.length)).sort(compareVersions);
  const version = versions.at(-1);
  if (!version) return undefined;
  const hasInitrd = names.includes(`initrd.img-${version}`);
  const link = (name: string, target: string) => {
    try {
      if (!lstatSync(join(root, name)).isSymbolicLink()) return false;
      return readlinkSync(join(root, name)).replace(/^\/+/, '') === target;
    } catch {
      return false;
    }
  };
  const useLinks = link('vmlinuz', `boot/vmlinuz-${version}`) && (!hasInitrd || link('initrd.img', `boot/initrd.img-${version}`));
  return {
    version,
    kernelPath: useLinks ? '/vmlinuz' : `/boot/vmlinuz-${version}`,
    initrdPath: hasInitrd ? (useLinks ? '/initrd.img' : `/boot/initrd.img-${version}`) : undefined,
  };
}

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
    { kind: 'file', path: '/etc/fstab', fs: 'root', mode: 0o644, content: renderFstab(s.rootUuid, s.bootUuid, s.espUuid), by },
    ...(s.espUuid ? [{ kind: 'dir', path: '/boot/efi', fs: 'root', mode: 0o755, by } as GuestFile] : []),
    // Docker leaves this marker in some images; inside a VM it would make systemd think it runs in a container.
    { kind: 'remove', path: '/.dockerenv', fs: 'root', by },
  ];
}

/** The root password, set in the image's own /etc/shadow (the hash is made when the file is written). */
export function passwordEdit(password: boolean, by: string): GuestFile[] {
  return password ? [{ kind: 'edit', path: '/etc/shadow', fs: 'root', mode: 0o640, note: "root's password (SHA-512 crypt)", by }] : [];
}

/** A VM of the image's own distribution: its identity is fresh on first boot, DNS goes where its resolver listens. */
export function systemGuestFiles(hostname: string, hasResolved: boolean, by: string): GuestFile[] {
  return [
    { kind: 'file', path: '/etc/hostname', fs: 'root', mode: 0o644, content: `${hostname}\n`, by },
    { kind: 'file', path: '/etc/hosts', fs: 'root', mode: 0o644, content: `127.0.0.1\tlocalhost\n127.0.1.1\t${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`, by },
    // An empty machine-id makes systemd generate a fresh one on first boot, so clones differ.
    { kind: 'file', path: '/etc/machine-id', fs: 'root', mode: 0o444, content: '', by },
    ...(hasResolved ? [{ kind: 'symlink', path: '/etc/resolv.conf', fs: 'root', content: '../run/systemd/resolve/stub-resolv.conf', by } as GuestFile] : []),
  ];
}

export interface Secrets {
  password?: string;
  random: Random;
  epochSeconds: number;
  /** Where files named work:NAME come from. */
  workDir?: string;
}

/** Writes the planned files (all but the ESP's) into the staged root, in order; the password edit needs the secret. */
export function applyGuestFiles(root: string, files: readonly GuestFile[], secrets: Secrets, edit?: (f: GuestFile) => void): void {
  writeGuestFiles(root, files, (f) => {
    if (f.path === '/etc/shadow') {
      if (secrets.password !== undefined) setPassword(root, secrets);
    } else edit?.(f);
  }, secrets.workDir);
}

/** /etc/shadow with root's password set (SHA-512 crypt), and the group that owns the file (Debian's shadow). */
export function passwordShadow(shadow: string, group: string, password: string, random: Random, epochSeconds: number): { content: string; gid: number } {
  const hash = sha512Crypt(password, makeSalt(random));
  const gid = /^shadow:[^:]*:(\d+):/m.exec(group)?.[1];
  return { content: setRootPassword(shadow, hash, passwordChangeDays(epochSeconds)), gid: gid ? Number(gid) : 0 };
}

function setPassword(root: string, s: Secrets & { password?: string }): void {
  const shadow = readIn(root, 'etc/shadow') ?? '';
  const hash = sha512Crypt(s.password!, makeSalt(s.random));
  writeIn(root, 'etc/shadow', setRootPassword(shadow, hash, passwordChangeDays(s.epochSeconds)), 0o640);
  const shadowGid = /^shadow:[^:]*:(\d+):/m.exec(readIn(root, 'etc/group') ?? '')?.[1];
  if (shadowGid) chownSync(resolveIn(root, 'etc/shadow'), 0, Number(shadowGid));
}

/** Whether the staged image has systemd-resolved (then /etc/resolv.conf points at its stub). */
export function hasResolved(root: string): boolean {
  try {
    return lstatSync(resolveIn(root, 'usr/lib/systemd/systemd-resolved', true)).isFile();
  } catch {
    return false;
  }
}

export interface GuestSettings {
  rootUuid: string;
  bootUuid?: string;
  espUuid?: string;
  hostname: string;
  password?: string;
  random: Random;
  epochSeconds: number;
  /** --raw: write only fstab (and the bootloader files), keep the image's own configuration. */
  raw: boolean;
}

/** The guest configuration of one conversion, written at once (what the configure step does with the plan's files). */
export async function configureGuest(root: string, s: GuestSettings): Promise<void> {
  const files = [
    ...baseGuestFiles({ rootUuid: s.rootUuid, bootUuid: s.bootUuid, espUuid: s.espUuid, password: s.password !== undefined }, 'guest'),
    ...passwordEdit(s.password !== undefined, 'guest'),
    ...(s.raw ? [] : systemGuestFiles(s.hostname, hasResolved(root), 'guest')),
  ];
  applyGuestFiles(root, files, { password: s.password, random: s.random, epochSeconds: s.epochSeconds });
}
