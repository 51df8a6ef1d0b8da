// The conversion plan as plain data (what `img2vm plan --json` prints), and the facts about an image it is made from.
import type { DiskLayout } from '../disk/layout.js';
import type { OsRelease } from '../guest/detect.js';
import type { StageId } from './events.js';

export type GuestStrategyId = 'distro' | 'img2vm' | 'image';
export type BootLoaderId = 'grub-bios' | 'grub-efi' | 'systemd-boot' | 'direct-kernel';
export type BuilderId = 'docker' | 'podman' | 'runc';

/** What img2vm learns about the image as the conversion goes; plan() is a pure function of options and facts. */
export interface ImageFacts {
  source?: {
    transport: string;
    id: string;
    layers: number;
    /** Set when the image is in the Docker daemon (its image id there). */
    daemonId?: string;
  };
  /** The distribution from /etc/os-release; null: the image has none. */
  os?: OsRelease | null;
  /** The distro strategy's build: its recipe label, whether the result was cached, the built image. */
  guest?: { distribution: string; template: string; builder: BuilderId; cached: boolean | null; image: string | null };
  /** Measured after flattening (estimated == true: from a scan of the image that knows nothing of a guest build yet). */
  content?: ContentFacts;
  /** The kernel the root file system holds. */
  kernel?: KernelFacts | null;
  /** The image has systemd-resolved (DNS goes through its stub then). */
  hasResolved?: boolean;
  /** Which builders answered (for --init auto). */
  builders?: Partial<Record<BuilderId, boolean>>;
  /** --init img2vm: the kernel img2vm supplies. */
  kernelBundle?: { version: string; vmlinuz: string; modulesDir?: string; config?: string; origin: string; id: string };
  /** What the image's userland offers the init (found in the flattened root). */
  userland?: Userland;
  /** Files the options name, as read when the conversion started (the --ssh-key file). */
  inputs?: { sshKey?: { file: string; text: string } };
  /** The image config's process: ENTRYPOINT, CMD, Env, WorkingDir, User. */
  process?: { entrypoint: string[]; cmd: string[]; env: string[]; cwd: string; user: string };
}

export interface Userland {
  /** A getty and login exist (a console login prompt is possible). */
  login: boolean;
  /** modprobe exists (the image loads modules, so it gets the kernel's /lib/modules). */
  modprobe: boolean;
  /** A shell img2vm can offer on the console (/bin/bash, /bin/sh), if any. */
  shell: string | null;
}

export interface ContentFacts {
  /** 4 KiB blocks file data, long symlinks and directories take. */
  blocks4k: number;
  /** Inodes the tree uses. */
  entries: number;
  /** Apparent bytes of regular files. */
  bytes: number;
  files: number;
  /** /boot alone, when it becomes a file system of its own. */
  boot?: { blocks4k: number; entries: number };
  /** The smallest root file system the ext4 writer can make of the tree (measured once the tree is final). */
  minimumBytes?: number;
  estimated?: boolean;
}

export interface KernelFacts {
  version: string;
  /** The kernel and initrd files themselves in the guest (kernelPath may be a link); default Debian's /boot names. */
  kernelFile?: string;
  initrdFile?: string;
  /** Paths as GRUB sees them on the root file system (Debian's /vmlinuz links when they point at this kernel). */
  kernelPath: string;
  initrdPath?: string;
}

/**
 * One thing img2vm does to the guest's files, in order: write a file, make a directory or symlink, remove an
 * entry, copy a host tree (GRUB's modules), or edit an image file (the root password). Paths are absolute in the
 * root file system's namespace (a separate /boot is what ends up under /boot); fs 'esp' files go to the ESP.
 * Secrets are never included: an edit says what it changes.
 */
export interface GuestFile {
  kind: 'file' | 'dir' | 'symlink' | 'remove' | 'copy' | 'edit';
  path: string;
  fs: 'root' | 'boot' | 'esp';
  mode?: number;
  /** file: its content (absent until the facts it depends on are known); symlink: its target. */
  content?: string;
  /** copy (and file): the host directory or file it comes from; work:NAME is a file the run made. */
  from?: string;
  /** copy: which names ("*.mod *.lst", or ** for the whole tree); remove: only the entries of the directory that match. */
  filter?: string;
  note?: string;
  /** The step that asked for it (a boot loader, or the guest strategy). */
  by: string;
}

export interface FileSystemPlan {
  role: 'root' | 'boot' | 'esp';
  type: 'ext4' | 'vfat';
  label: string;
  /** ext4: the UUID; vfat: the volume id as blkid shows it (XXXX-XXXX). */
  uuid: string;
  /** Byte offset in the disk image (0 for the direct-kernel file system), and size. */
  offset: number;
  size: number;
  inodes?: number;
  journalMiB?: number;
  /** Fixed directory hash seed (with --seed). */
  hashSeed?: string;
  /** Host directory whose tree becomes this file system (set by apply, not by plan). */
  source?: string;
}

export interface PlanStep {
  stage: StageId;
  /** The implementation, registered under the id the CLI spells (docker-daemon, distro, grub-efi, qcow2, push). */
  id: string;
  title: string;
  /** Which file system a disk step makes. */
  target?: 'root' | 'boot' | 'esp';
}

export interface ConversionPlan {
  image: string;
  /** The root file system's UUID and directory hash seed (drawn before its size is known). */
  rootUuid: string;
  rootHashSeed: string;
  source: { transport: string; id: string | null; layers: number | null };
  guest: {
    strategy: GuestStrategyId;
    /** Why this strategy (auto says which it chose). */
    reason: string;
    distribution: string | null;
    template: string | null;
    builder: BuilderId | null;
    cached: boolean | null;
    /** --init img2vm: what img2vm's init will run, and the kernel it boots. */
    init?: { mode: 'workload' | 'init' | 'console'; argv: string[]; user: string; cwd: string; login: boolean; why: string; kernel: string | null; service?: string[] };
  };
  content: ContentFacts | null;
  kernel: KernelFacts | null;
  /** Partitions with sizes, offsets, type GUIDs and GUIDs; null for the direct-kernel output, or until the content is known. */
  layout: DiskLayout | null;
  /** How the size was chosen: fitted to the content, or --size. */
  sizing: 'fitted' | 'fixed';
  filesystems: FileSystemPlan[];
  boot: {
    mode: 'bios' | 'uefi' | 'hybrid' | 'direct-kernel';
    loaders: BootLoaderId[];
    /** The command line the loaders pass (none for direct boot: the runner's config holds it). */
    cmdline: string | null;
    /** --kernel-cmdline as given. */
    userCmdline: string | null;
    grubDir: string | null;
  };
  hostname: string;
  guestFiles: GuestFile[];
  /** Guest files copied out before the file system is made (kernel and initrd for systemd-boot and direct boot). */
  exports: { path: string; as: string; optional?: boolean }[];
  output: { format: string; path: string | null; compress: boolean; push: string | null; sideFiles: string[] };
  steps: PlanStep[];
  /** Facts not known yet when the plan was made (e.g. the kernel before the guest build ran). */
  unknown: string[];
}
