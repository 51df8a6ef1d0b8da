// What img2vm reads from and writes into the flattened tree: the kernel in /boot, what the userland offers, the
// planned guest files (through the tree's one resolver, never through the image's symlinks), and exports.
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Img2vmError } from '../core/errors.js';
import type { GuestFile, KernelFacts, Userland } from '../core/plan.js';
import type { RootTree } from './tree-edit.js';
import { binPath, showPath } from './tree-path.js';
import type { DirNode, FileNode, Node } from './tree.js';

const p = (s: string) => binPath(s);

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** The newest kernel in /boot, preferring Debian's /vmlinuz and /initrd.img links when they point at it. */
export function findKernelInTree(tree: RootTree): KernelFacts | undefined {
  const boot = tree.lookup(p('/boot'));
  if (boot?.kind !== 'dir') return undefined;
  const names = [...boot.entries.keys()].map(showPath);
  const versions = names
    .filter((n) => n.startsWith('vmlinuz-') && boot.entries.get(binPath(n))?.kind === 'file')
    .map((n) => n.slice(8))
    .sort(compareVersions);
  const version = versions.at(-1);
  if (!version) return undefined;
  const hasInitrd = boot.entries.get(binPath(`initrd.img-${version}`))?.kind === 'file';
  const link = (name: string, target: string) => {
    const n = tree.lookup(p(name), { followLast: false });
    return n?.kind === 'symlink' && showPath(n.target).replace(/^\/+/, '') === target;
  };
  const useLinks =
    link('/vmlinuz', `boot/vmlinuz-${version}`) && (!hasInitrd || link('/initrd.img', `boot/initrd.img-${version}`));
  return {
    version,
    kernelPath: useLinks ? '/vmlinuz' : `/boot/vmlinuz-${version}`,
    initrdPath: hasInitrd ? (useLinks ? '/initrd.img' : `/boot/initrd.img-${version}`) : undefined,
  };
}

function isFile(tree: RootTree, path: string): boolean {
  return tree.lookup(p(path))?.kind === 'file';
}

export function hasResolvedInTree(tree: RootTree): boolean {
  return isFile(tree, '/usr/lib/systemd/systemd-resolved');
}

/**
 * The programs img2vm's init looks for on the console (native/run.c, run_workload), in its order: a getty and a
 * login for a login prompt, else a shell. A test holds these lists to the C source's.
 */
export const CONSOLE_PROGRAMS = {
  getty: ['/sbin/agetty', '/usr/sbin/agetty', '/sbin/getty', '/usr/sbin/getty'],
  login: ['/bin/login', '/usr/bin/login'],
  shell: ['/bin/bash', '/bin/sh'],
} as const;

/**
 * The init's rule for a program, applied to the tree: stat() after its chroot finds a regular file with an
 * execute bit (symlinks followed inside the root; a dangling or looping one is no program).
 */
function isProgram(tree: RootTree, path: string): boolean {
  try {
    const n = tree.lookup(p(path));
    return n?.kind === 'file' && (n.meta.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** What the image's userland offers img2vm's init: a console login, module loading, a shell. */
export function probeUserlandInTree(tree: RootTree): Userland {
  const first = (paths: readonly string[]) => paths.find((x) => isProgram(tree, x));
  return {
    login: !!first(CONSOLE_PROGRAMS.getty) && !!first(CONSOLE_PROGRAMS.login),
    modprobe: !!first([
      '/sbin/modprobe',
      '/usr/sbin/modprobe',
      '/bin/modprobe',
      '/usr/bin/modprobe',
      '/bin/kmod',
      '/usr/bin/kmod',
    ]),
    shell: first(CONSOLE_PROGRAMS.shell) ?? null,
  };
}

/** Stores a host file in the tree's store, streamed (kernels, module trees), as a new node at path. */
async function putHostFile(tree: RootTree, path: string, host: string, mode: number): Promise<void> {
  const st = await lstat(host);
  if (!st.isFile())
    throw new Img2vmError(
      'badImage',
      `${host} is not a regular file`,
      'img2vm copies only regular files into the guest',
    );
  const ref = await tree.store.put(createReadStream(host), st.size);
  const node: FileNode = { kind: 'file', meta: tree.meta({ mode }), size: st.size, data: ref };
  tree.put(p(path), node);
}

/** Copies a host directory (a kernel's modules) into a fresh directory of the tree: directories and regular files only. */
async function copyHostTree(tree: RootTree, path: string, host: string, patterns?: RegExp[]): Promise<void> {
  tree.remove(p(path));
  tree.mkdirp(p(path));
  const walk = async (from: string, to: string, top: boolean) => {
    for (const name of (await readdir(from)).sort()) {
      const st = await lstat(join(from, name));
      if (st.isDirectory() && !patterns) {
        tree.mkdirp(p(`${to}/${name}`));
        await walk(join(from, name), `${to}/${name}`, false);
      } else if (st.isFile() && (!patterns || (top && patterns.some((re) => re.test(name))))) {
        await putHostFile(tree, `${to}/${name}`, join(from, name), 0o644);
      }
    }
  };
  await walk(host, path, true);
}

function globRe(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/**
 * Carries out planned guest files (all but the ESP's) in order; `edit` entries go to the caller, who knows the secrets.
 * An estimate (img2vm plan without the guest's build or kernel) leaves out the files whose content is not known yet.
 */
export async function writeGuestFilesToTree(
  tree: RootTree,
  files: readonly GuestFile[],
  edit: (f: GuestFile) => Promise<void>,
  workDir: string,
  o: { estimate?: boolean } = {},
): Promise<void> {
  for (const f of files) {
    if (f.fs === 'esp') continue;
    switch (f.kind) {
      case 'file':
        // A directory-like entry names files a later fact decides (img2vm's kernel before it is fetched): nothing yet.
        if (f.path.endsWith('/') && f.from === undefined && f.content === undefined) break;
        if (f.from !== undefined)
          await putHostFile(
            tree,
            f.path,
            f.from.startsWith('work:') ? join(workDir, f.from.slice(5)) : f.from,
            f.mode ?? 0o644,
          );
        else if (f.content === undefined) {
          if (o.estimate) break;
          throw new Error(`guest file ${f.path} has no content yet`);
        } else tree.writeFile(p(f.path), f.content, { mode: f.mode ?? 0o644 });
        break;
      case 'dir':
        tree.mkdirp(p(f.path));
        break;
      case 'symlink':
        tree.symlink(p(f.path), p(f.content ?? ''));
        break;
      case 'remove':
        if (f.filter) removeMatching(tree, f.path, globRe(f.filter));
        else tree.remove(p(f.path));
        break;
      case 'copy':
        await copyHostTree(
          tree,
          f.path,
          f.from!,
          f.filter === '**' ? undefined : (f.filter ?? '*').split(/\s+/).map(globRe),
        );
        break;
      case 'edit':
        await edit(f);
        break;
    }
  }
}

function removeMatching(tree: RootTree, dir: string, re: RegExp): void {
  const d = tree.lookup(p(dir));
  if (d?.kind !== 'dir') return;
  for (const name of [...d.entries.keys()]) if (re.test(showPath(name))) tree.remove(p(`${dir}/${showPath(name)}`));
}

/** A regular file of the tree as a stream of its content (for the ESP and side files); refuses anything else. */
export function fileNode(tree: RootTree, path: string): FileNode {
  const n: Node | undefined = tree.lookup(p(path));
  if (n?.kind !== 'file')
    throw new Img2vmError('badImage', `${path} in the image is not a regular file`, "the image's /boot is damaged");
  return n;
}

/** Copies a file of the tree out to the host (a kernel for the direct-kernel output, systemd-boot's binary). */
export async function exportFromTree(tree: RootTree, path: string, dest: string): Promise<void> {
  const n = fileNode(tree, path);
  await pipeline(Readable.from(n.data.store.read(n.data)), createWriteStream(dest, { mode: 0o644 }));
}

/** Takes /boot out of the tree for a file system of its own, leaving an empty mount point with its metadata. */
export function detachBoot(tree: RootTree): DirNode {
  const r = tree.resolve(p('/boot'), { followLast: true });
  if (!r.ok || r.node?.kind !== 'dir' || r.node === tree.root) {
    throw new Img2vmError(
      'badImage',
      "the image's /boot is not a directory of its own",
      'convert without --boot-partition',
    );
  }
  const boot = r.node;
  // Unlinked without releasing: the contents move to /boot's own file system (which copies them).
  tree.unlink(r);
  // The mount point replaces whatever named the directory (a symlink to it included).
  tree.put(p('/boot'), { kind: 'dir', meta: { ...boot.meta, xattrs: new Map(boot.meta.xattrs) }, entries: new Map() });
  return boot;
}
