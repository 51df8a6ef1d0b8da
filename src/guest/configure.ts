// Writes the per-conversion guest settings into the staged root: fstab, hostname, root password, machine-id, DNS.
import { lstat, mkdir, readFile, readdir, readlink, rm, symlink, writeFile, chmod, chown } from 'node:fs/promises';
import { posix, join } from 'node:path';
import { Img2vmError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { makeSalt, passwordChangeDays, setRootPassword, sha512Crypt } from './credentials.js';

/**
 * Resolves a path inside root with chroot semantics: symlinks in parent directories are followed
 * but re-rooted, '..' stops at root. The last component is not followed. Image content is hostile,
 * so nothing img2vm writes into the guest may be redirected outside the staging tree.
 */
export async function resolveInRoot(root: string, path: string, followLast = false): Promise<string> {
  const todo = path.split('/').filter((c) => c && c !== '.');
  const done: string[] = [];
  let hops = 0;
  while (todo.length) {
    const c = todo.shift()!;
    if (c === '..') {
      done.pop();
      continue;
    }
    const real = join(root, ...done, c);
    const st = await lstat(real).catch(() => undefined);
    if (st?.isSymbolicLink() && (todo.length > 0 || followLast)) {
      if (++hops > 40) throw new Img2vmError('badImage', `too many symlinks resolving /${path} in the image`, 'the image has a symlink loop');
      const target = await readlink(real);
      if (target.startsWith('/')) done.length = 0;
      todo.unshift(...target.split('/').filter((x) => x && x !== '.'));
      continue;
    }
    done.push(c);
  }
  return join(root, ...done);
}

/** Writes a file inside root, replacing whatever entry was there (a symlink is replaced, never followed). */
export async function writeInRoot(root: string, path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const parent = await resolveInRoot(root, posix.dirname(path), true);
  await mkdirInRoot(root, parent);
  const dest = join(parent, posix.basename(path));
  const st = await lstat(dest).catch(() => undefined);
  // Unlink first: writing through an existing hard link would change the other names too.
  if (st) await rm(dest, { recursive: true, force: true });
  await writeFile(dest, content, { mode, flag: 'wx' });
  await chown(dest, 0, 0);
  await chmod(dest, mode);
}

async function mkdirInRoot(root: string, real: string): Promise<void> {
  // real is already resolved under root; components that exist as non-directories are an image error.
  const rel = real.slice(root.length).split('/').filter(Boolean);
  let cur = root;
  for (const c of rel) {
    cur = join(cur, c);
    const st = await lstat(cur).catch(() => undefined);
    if (!st) await mkdir(cur, { mode: 0o755 });
    else if (!st.isDirectory()) throw new Img2vmError('badImage', `${cur.slice(root.length)} in the image is not a directory`, 'the image layout is broken');
  }
}

/**
 * Gives a directory inside root that img2vm fills itself (GRUB's modules): whatever the image had at
 * that path is removed first, so no symlink planted there can redirect the copy outside the root.
 */
export async function freshDirInRoot(root: string, path: string): Promise<string> {
  const parent = await resolveInRoot(root, posix.dirname(path), true);
  await mkdirInRoot(root, parent);
  const dir = join(parent, posix.basename(path));
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { mode: 0o755 });
  return dir;
}

/** Reads a regular file inside root; undefined when it is missing or not a regular file. */
export async function readInRoot(root: string, path: string): Promise<string | undefined> {
  const p = await resolveInRoot(root, path, true);
  const st = await lstat(p).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  return readFile(p, 'utf8');
}

export interface KernelInfo {
  version: string;
  /** Paths as GRUB sees them on the root file system. */
  kernelPath: string;
  initrdPath?: string;
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Finds the newest kernel in /boot, preferring Debian's /vmlinuz and /initrd.img links that follow upgrades. */
export async function findKernel(root: string): Promise<KernelInfo | undefined> {
  const boot = await resolveInRoot(root, 'boot', true).catch(() => undefined);
  if (!boot) return undefined;
  const names = await readdir(boot).catch(() => [] as string[]);
  const versions = names.filter((n) => n.startsWith('vmlinuz-')).map((n) => n.slice('vmlinuz-'.length)).sort(compareVersions);
  const version = versions.at(-1);
  if (!version) return undefined;
  const hasInitrd = names.includes(`initrd.img-${version}`);
  const link = async (name: string, target: string) => {
    const st = await lstat(join(root, name)).catch(() => undefined);
    if (!st?.isSymbolicLink()) return false;
    const t = (await readlink(join(root, name))).replace(/^\/+/, '');
    return t === target;
  };
  const useLinks = (await link('vmlinuz', `boot/vmlinuz-${version}`)) && (!hasInitrd || (await link('initrd.img', `boot/initrd.img-${version}`)));
  return {
    version,
    kernelPath: useLinks ? '/vmlinuz' : `/boot/vmlinuz-${version}`,
    initrdPath: hasInitrd ? (useLinks ? '/initrd.img' : `/boot/initrd.img-${version}`) : undefined,
  };
}

export interface GuestSettings {
  rootUuid: string;
  /** UUID of a separate /boot file system. */
  bootUuid?: string;
  /** FAT volume id of the ESP as blkid shows it (XXXX-XXXX), mounted at /boot/efi. */
  espUuid?: string;
  hostname: string;
  password?: string;
  random: Random;
  epochSeconds: number;
  /** --raw: write only fstab (and the bootloader files), keep the image's own configuration. */
  raw: boolean;
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

export async function configureGuest(root: string, s: GuestSettings): Promise<void> {
  await writeInRoot(root, 'etc/fstab', renderFstab(s.rootUuid, s.bootUuid, s.espUuid));
  if (s.espUuid) await mkdirInRoot(root, await resolveInRoot(root, 'boot/efi', true));
  // Docker leaves this marker in some images; inside a VM it would make systemd think it runs in a container.
  await rm(await resolveInRoot(root, '.dockerenv'), { force: true });
  if (s.raw && s.password === undefined) return;
  if (s.password !== undefined) {
    const shadow = (await readInRoot(root, 'etc/shadow')) ?? '';
    const hash = sha512Crypt(s.password, makeSalt(s.random));
    await writeInRoot(root, 'etc/shadow', setRootPassword(shadow, hash, passwordChangeDays(s.epochSeconds)), 0o640);
    const shadowGid = /^shadow:[^:]*:(\d+):/m.exec((await readInRoot(root, 'etc/group')) ?? '')?.[1];
    if (shadowGid) await chown(await resolveInRoot(root, 'etc/shadow'), 0, Number(shadowGid));
  }
  if (s.raw) return;
  await writeInRoot(root, 'etc/hostname', `${s.hostname}\n`);
  await writeInRoot(root, 'etc/hosts', `127.0.0.1\tlocalhost\n127.0.1.1\t${s.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`);
  // An empty machine-id makes systemd generate a fresh one on first boot, so clones differ.
  await writeInRoot(root, 'etc/machine-id', '', 0o444);
  const resolved = await lstat(await resolveInRoot(root, 'usr/lib/systemd/systemd-resolved', true)).catch(() => undefined);
  if (resolved) {
    const p = await resolveInRoot(root, 'etc/resolv.conf');
    await rm(p, { force: true, recursive: true });
    await symlink('../run/systemd/resolve/stub-resolv.conf', p);
  }
}
