// The conversion plan as plain data (what `img2vm plan --json` prints), and the facts about an image it is made from.
import type { DiskLayout } from './layout.js';
import type { StageId } from './events.js';
import type { GuestArch } from './arch.js';
import type { BinfmtFacts } from './binfmt.js';

/** What /etc/os-release says of the image's distribution (parsed in guest/detect.ts). */
export interface OsRelease {
  id: string;
  idLike: string[];
  versionId?: string;
  versionCodename?: string;
  /** Ubuntu and its derivatives (Mint, Pop!_OS) name the Ubuntu release they are built on. */
  ubuntuCodename?: string;
  prettyName?: string;
}

export type GuestStrategyId = 'distro' | 'img2vm' | 'image';
export type BootLoaderId = 'grub-bios' | 'grub-efi' | 'systemd-boot' | 'direct-kernel';
export type BuilderId = 'docker' | 'podman' | 'runc';

/** What reading the image tells (planning phase 2): where it came from, its process, its distribution, the builders. */
export interface ImageFacts {
  source: {
    transport: string;
    id: string;
    layers: number;
    /** Set when the image is in the Docker daemon (its image id there). */
    daemonId?: string;
  };
  /** The image config's process: ENTRYPOINT, CMD, Env, WorkingDir, User. */
  process: ProcessFacts;
  /** The image config's architecture (amd64 when it says none). */
  architecture: string;
  /** The distribution from /etc/os-release; null: the image has none; undefined: not looked for (not needed). */
  os?: OsRelease | null;
  /** Which builders answered (looked for only when --init auto may pick the distro strategy). */
  builders?: Partial<Record<BuilderId, boolean>>;
}

export interface ProcessFacts {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  cwd: string;
  user: string;
}

/** What the bootable tree tells (planning phase 3): its kernel, what its userland offers, how it was made bootable. */
export interface TreeFacts {
  /** The kernel the guest boots: in its /boot (distro, image), or the one img2vm brings (img2vm); null: none found. */
  kernel: KernelFacts | null;
  /** The image has systemd-resolved (DNS goes through its stub then). */
  hasResolved: boolean;
  /** What the image's userland offers the init (found in the flattened root; unknown in plans made from partial facts). */
  userland?: Userland;
  /** The distro strategy's build: whether the result was cached, the builder that made it, the built image. */
  build?: { builder: BuilderId; cached: boolean; image: string };
  /** --init img2vm: the kernel img2vm supplies (host paths of its files in img2vm's cache or the user's). */
  kernelBundle?: { version: string; vmlinuz: string; modulesDir?: string; config?: string; origin: string; id: string };
  /** Measured from a scan of the source image where the guest build is not known yet (img2vm plan). */
  estimated?: boolean;
}

/** Files the options name, read once when the conversion starts (so a plan is a function of data). */
export interface PlanInputs {
  sshKey?: { file: string; text: string };
  /** The host's architecture as OCI spells it (default: this machine's), for plans of another host. */
  hostArchitecture?: string;
  /**
   * What binfmt_misc on the host runs (src/guest/binfmt.ts parses it): a distro build for another architecture runs
   * the image's programs under a user-mode emulator registered there. Absent: none is registered.
   */
  binfmt?: BinfmtFacts;
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
}

export interface PlanStep {
  stage: StageId;
  /** The implementation, registered under the id the CLI spells (docker-daemon, distro, grub-efi, qcow2, push). */
  id: string;
  title: string;
  /** Which file system a disk step makes. */
  target?: 'root' | 'boot' | 'esp';
}

/** The distro strategy's per-conversion settings, as the options give them (the password only as whether there is one). */
export interface GuestSettings {
  password: boolean;
  sshKey: { file: string; text: string } | null;
  user: string | null;
  dns: string[] | null;
  cloudInit: boolean;
  entrypointService: boolean;
  systemdBoot: boolean;
  /** The root is LUKS2: the initramfs must unlock it (what each family needs is in guest/config/families.ts). */
  luks: boolean;
}

/** A distribution template with the values the options select: what a builder builds on top of the image. */
export interface BuildRecipe {
  template: string;
  label: string;
  values: Record<string, string>;
}

/**
 * The LUKS2 volume the root file system is written into (--luks-password): everything but the secrets. The data
 * segment starts dataOffset bytes into the root partition; the file system's offset is after it.
 */
export interface LuksPlan {
  uuid: string;
  cipher: 'aes-xts-plain64';
  keyBytes: number;
  sectorSize: 512 | 4096;
  hash: 'sha256';
  /** PBKDF2: Node.js 20 has no Argon2 (crypto.argon2 came with Node.js 24), so the keyslot uses PBKDF2-SHA256. */
  pbkdf: 'pbkdf2';
  keyslotIterations: number;
  digestIterations: number;
  dataOffset: number;
  /** random: drawn from the system for every run, --seed or not; file: --luks-master-key-file (tests only). */
  masterKey: 'random' | 'file';
}

export interface ConversionPlan {
  image: string;
  /**
   * The guest's architecture, which chooses the kernel, the init, the loaders, the firmware and the machine: the
   * image config's once it is read, before that --platform's or the host's.
   */
  architecture: { arch: GuestArch; from: 'image' | 'platform' | 'host' };
  /** The root file system's UUID and directory hash seed (drawn before its size is known). */
  rootUuid: string;
  rootHashSeed: string;
  source: {
    transport: string;
    id: string | null;
    layers: number | null;
    pull: 'always' | 'missing' | 'never';
    /** The platform asked for (--platform), null: the host's. */
    platform: string | null;
    insecureRegistries: string[];
    /** Cached registry blobs hashed again before use (--verify-cache); otherwise trusted as verified on entry. */
    verifyCache: boolean;
  };
  guest: {
    strategy: GuestStrategyId;
    /** Why this strategy (auto says which it chose). */
    reason: string;
    distribution: string | null;
    template: string | null;
    builder: BuilderId | null;
    cached: boolean | null;
    /**
     * distro: the builders to try, in order (one, or auto's order); once the distribution is known, the template
     * with the options' values, the distribution, the image's process and the account settings the build's files
     * and edits are made from (secrets left out).
     */
    build?: {
      builders: BuilderId[];
      recipe: BuildRecipe | null;
      /** The platform the build's steps run as (the guest's); docker and podman are told it, runc needs no word. */
      platform: string;
      /**
       * The binfmt_misc handler that runs the steps' programs when the guest's architecture is not the host's (its
       * name and interpreter); null: they run natively.
       */
      emulator: { name: string; interpreter: string } | null;
      os: OsRelease | null;
      process: ProcessFacts | null;
      settings: GuestSettings;
    };
    /** img2vm: the kernel asked for (--kernel and its companions; null spec: Debian's cloud kernel). */
    kernelSource?: { spec: string | null; modulesDir: string | null; mirror: string | null; security: boolean };
    /** --init img2vm: what img2vm's init will run, and the kernel it boots. */
    init?: {
      mode: 'workload' | 'init' | 'console';
      argv: string[];
      /** The image's ENTRYPOINT (argv is it and CMD): a run's command follows it. */
      entrypoint: string[];
      user: string;
      cwd: string;
      login: boolean;
      why: string;
      kernel: string | null;
      service?: string[];
      dns?: string[];
    };
  };
  content: ContentFacts | null;
  kernel: KernelFacts | null;
  /**
   * Where the disk is assembled: the root file system's offset (known from the options, so file contents can be
   * written before the sizes are), and the container the output format asks for.
   */
  disk: { rootOffset: number; container: 'raw' | 'qcow2'; inPlace: boolean };
  /** Partitions with sizes, offsets, type GUIDs and GUIDs; null for the direct-kernel output, or until the content is known. */
  layout: DiskLayout | null;
  /** How the size was chosen: fitted to the content, or --size. */
  sizing: 'fitted' | 'fixed';
  filesystems: FileSystemPlan[];
  /** The root partition encrypted with LUKS2 (its file system inside), or null. */
  luks: LuksPlan | null;
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
