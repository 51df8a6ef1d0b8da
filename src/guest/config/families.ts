// Per-family, per-release, per-architecture facts: package names, services, network stack, serial console;
// release-specific choices cite why.
import { ARCH, type GuestArch } from '../../core/arch.js';

export type Family = 'debian' | 'alpine' | 'fedora';

/** What one optional feature needs at build time: packages, and services to enable. */
export interface Feature {
  packages: string[];
  /** systemd units to `systemctl enable`, or OpenRC services for the default runlevel. */
  enable: string[];
  /** OpenRC services for the boot runlevel. */
  boot: string[];
}

export interface DistroInfo {
  /** The os-release ID the recipe is for (a derivative gets its parent's). */
  id: string;
  /** Normalised release: "12", "testing", "24.04", "3.20", "edge", "41", "9". */
  version: string;
  family: Family;
  template: string;
  label: string;
  init: 'systemd' | 'openrc';
  network: 'networkd' | 'networkmanager' | 'udhcpc';
  /** The guest's architecture, which this recipe is for. */
  arch: GuestArch;
  /** The architectures the family's template has packages and a console for (a recipe for another is refused). */
  arches: GuestArch[];
  kernelPackage: string;
  /** Template values with every optional feature off. */
  values: Record<string, string>;
  features: { ssh: Feature; sudo: Feature; cloudInit: Feature; entrypoint: Feature };
  /** The group sudoers conventionally grants (membership is added when the image has the group). */
  sudoGroup: 'sudo' | 'wheel';
  /** Appended to the kernel command line by whoever writes the boot entry. */
  kernelArgs: string[];
  /** The package that ships systemd-boot's EFI binary, where the release has one. */
  systemdBootPackage?: string;
  /** What makes the initramfs unlock a LUKS2 root (--luks-password). */
  luks: LuksUnlock;
  /** How /etc/shadow is created when an image has none (existing files keep their own mode and owner). */
  shadow: { mode: number; group: string | null };
}

/**
 * How a family's initramfs unlocks a LUKS2 root. The volume is named on the kernel command line, not in a crypttab,
 * so the cached guest build holds no one disk's UUID; the root stays open across switch_root without a crypttab.
 */
export interface LuksUnlock {
  /** Installed by the template build. */
  packages: string[];
  /** Template values that differ for an encrypted root (keys of the family's `values`). */
  values: Record<string, string>;
  /**
   * The kernel command line's part: `args` name the volume of this LUKS UUID; `root`, where set, replaces
   * `UUID=<ext4 UUID>` as root= (the initramfs wants the mapped device named). Never the passphrase.
   */
  cmdline(luksUuid: string): { root?: string; args: string[] };
}

/** The kernel package for each architecture a family's template serves. */
type Kernels = Partial<Record<GuestArch, string>>;

/** What a family's values take from the architecture: its kernel package and the serial console of img2vm's VMs. */
function archFacts(kernels: Kernels, arch: GuestArch): Pick<DistroInfo, 'arch' | 'arches' | 'kernelPackage'> {
  return { arch, arches: Object.keys(kernels) as GuestArch[], kernelPackage: kernels[arch] ?? '' };
}

const none: Feature = { packages: [], enable: [], boot: [] };
const feature = (packages: string[], enable: string[] = [], boot: string[] = []): Feature => ({
  packages,
  enable,
  boot,
});

/**
 * Debian and Ubuntu share templates/debian. `resolvedSplit`: systemd-resolved is its own package from
 * systemd 251.3 on (Debian 12 bookworm, Ubuntu 22.10 kinetic); before that it is part of `systemd`.
 */
function debianFamily(
  id: string,
  version: string,
  label: string,
  kernels: Kernels,
  resolvedSplit: boolean,
  sshUnit: string,
  systemdBootPackage: string | undefined,
  arch: GuestArch,
): DistroInfo {
  const a = archFacts(kernels, arch);
  return {
    id,
    version,
    family: 'debian',
    template: 'debian',
    label,
    init: 'systemd',
    network: 'networkd',
    ...a,
    values: {
      kernel_package: a.kernelPackage,
      // The getty on the serial port img2vm's VMs have: the PC UART, or the PL011 of QEMU's arm virt machine.
      serial_console: ARCH[arch].serialConsole,
      release_packages: resolvedSplit ? 'systemd-resolved' : '',
      extra_packages: '',
      enable_units: '',
    },
    features: {
      ssh: feature(['openssh-server'], [sshUnit, 'img2vm-ssh-keygen.service']),
      sudo: feature(['sudo']),
      // The package's maintainer scripts enable its units (their names changed in cloud-init 24.3).
      cloudInit: feature(['cloud-init']),
      entrypoint: none,
    },
    sudoGroup: 'sudo',
    kernelArgs: [],
    systemdBootPackage,
    // cryptsetup-initramfs is forced into the initramfs by the template's conf hook; its cryptroot script reads
    // cryptopts (no crypttab in the build).
    luks: {
      packages: ['cryptsetup-initramfs'],
      values: {},
      cmdline: (uuid) => ({ args: [`cryptopts=target=root_crypt,source=UUID=${uuid},key=none,luks`] }),
    },
    shadow: { mode: 0o640, group: 'shadow' },
  };
}

/** n is the major release, Infinity for testing/sid. */
export function debianInfo(version: string, n: number, arch: GuestArch = 'amd64'): DistroInfo {
  const label = version === 'testing' ? 'Debian testing/sid' : `Debian ${version}`;
  // linux-image-cloud-ARCH: the kernel Debian builds for VMs (virtio, NVMe; Xen/Hyper-V on amd64), in 11, 12 and
  // 13 for amd64 and arm64 alike. systemd-boot became a package of its own in bookworm; in bullseye the EFI binary
  // is inside `systemd` (on both architectures).
  return debianFamily(
    'debian',
    version,
    label,
    { amd64: 'linux-image-cloud-amd64', arm64: 'linux-image-cloud-arm64' },
    n >= 12,
    'ssh.service',
    n >= 12 ? 'systemd-boot' : undefined,
    arch,
  );
}

/** n is YYMM (2404 for 24.04). */
export function ubuntuInfo(version: string, n: number, arch: GuestArch = 'amd64'): DistroInfo {
  // linux-image-virtual: the generic kernel with the module set for VMs; exists in every release since 14.04, on
  // amd64 and (from the ports archive, which arm64 images' sources name) arm64.
  // Since 22.10 sshd is socket-activated: ssh.socket (RequiredBy=ssh.service) listens and starts ssh.service on
  // the first connection; that is the unit the package itself enables there.
  return debianFamily(
    'ubuntu',
    version,
    `Ubuntu ${version}`,
    { amd64: 'linux-image-virtual', arm64: 'linux-image-virtual' },
    n >= 2210,
    n >= 2210 ? 'ssh.socket' : 'ssh.service',
    n >= 2210 ? 'systemd-boot' : undefined,
    arch,
  );
}

const MKINITFS_FEATURES = ['ata', 'base', 'ext4', 'nvme', 'scsi', 'virtio', 'img2vm'];

// The Alpine and Fedora templates name the serial console ttyS0 in what they copy as it is (an inittab, securetty,
// unit files), so they serve amd64 only until that becomes a value as it is in the Debian template.
export function alpineInfo(version: string, arch: GuestArch = 'amd64'): DistroInfo {
  return {
    id: 'alpine',
    version,
    family: 'alpine',
    template: 'alpine',
    label: `Alpine ${version}`,
    init: 'openrc',
    network: 'udhcpc',
    // linux-virt installs /boot/vmlinuz-virt and its modules; mkinitfs writes /boot/initramfs-virt.
    ...archFacts({ amd64: 'linux-virt' }, arch),
    values: {
      kernel_package: 'linux-virt',
      kernel_flavor: 'virt',
      // mkinitfs includes only the features named (it has no host-only mode): a VM's root disk on virtio-blk,
      // virtio-scsi, NVMe or SATA with ext4 on it; img2vm's own feature puts /etc/modules (which names ext4, a
      // module in linux-virt) into the initramfs, whose init loads those modules before it mounts the root.
      mkinitfs_features: MKINITFS_FEATURES.join(' '),
      release_packages: '',
      extra_packages: '',
      boot_services: '',
      default_services: '',
    },
    features: {
      // openssh-server's init script lives in openssh-server-common-openrc, which apk adds itself (install_if openrc).
      ssh: feature(['openssh-server'], ['img2vm-ssh-keygen', 'sshd']),
      sudo: feature(['sudo']),
      // cloud-init is in the community repository, which Alpine's container images enable. Its package does not
      // enable its services (setup-cloud-init does); these are the four it adds.
      cloudInit: feature(['cloud-init'], ['cloud-init', 'cloud-config', 'cloud-final'], ['cloud-init-local']),
      // su-exec drops to the image's USER without PAM or a TTY, as Docker does.
      entrypoint: feature(['su-exec']),
    },
    sudoGroup: 'wheel',
    // Alpine's initramfs loads the modules named on the command line (and in its /etc/modules, which the template
    // fills) before it mounts the root; ext4 is a module in linux-virt. This is what Alpine's own boot loader
    // configuration passes; the template's /etc/modules makes a boot entry without it work too.
    kernelArgs: ['modules=sd-mod,usb-storage,ext4', 'rootfstype=ext4'],
    // The cryptsetup feature adds dm-crypt and the kernel's crypto modules; nlplug-findfs (linked with
    // libcryptsetup) opens cryptroot= as /dev/mapper/<cryptdm>, asking "Enter passphrase for DEVICE:" on the
    // console, and the init mounts root= from there (mkinitfs-bootparam(7)).
    luks: {
      packages: ['cryptsetup'],
      values: { mkinitfs_features: [...MKINITFS_FEATURES, 'cryptsetup'].join(' ') },
      cmdline: (uuid) => ({ root: '/dev/mapper/root', args: [`cryptroot=UUID=${uuid}`, 'cryptdm=root'] }),
    },
    shadow: { mode: 0o640, group: 'shadow' },
  };
}

function fedoraFamily(
  id: string,
  version: string,
  label: string,
  systemdBootPackage: string | undefined,
  arch: GuestArch,
): DistroInfo {
  return {
    id,
    version,
    family: 'fedora',
    template: 'fedora',
    label,
    init: 'systemd',
    // systemd-networkd is not in the RHEL-family repositories (only EPEL); NetworkManager is everywhere.
    network: 'networkmanager',
    // kernel-core: the kernel and the modules a VM needs (virtio, NVMe, ext4), since Fedora 21 and EL 8.
    ...archFacts({ amd64: 'kernel-core' }, arch),
    values: {
      kernel_package: 'kernel-core',
      // Written to /etc/dracut.conf.d/91-img2vm-modules.conf as add_dracutmodules (none without an option).
      dracut_modules: '',
      release_packages: '',
      extra_packages: '',
      enable_units: '',
    },
    features: {
      // sshd-keygen@.service already makes missing host keys before sshd on this family; ours runs after it.
      ssh: feature(['openssh-server'], ['sshd.service', 'img2vm-ssh-keygen.service']),
      sudo: feature(['sudo']),
      // cloud-init's %post enables its four units on first install ("runs once then goes away" exception).
      cloudInit: feature(['cloud-init']),
      entrypoint: none,
    },
    sudoGroup: 'wheel',
    kernelArgs: [],
    systemdBootPackage,
    // dracut's crypt module, named although the generic initramfs takes it whenever cryptsetup (or
    // systemd-cryptsetup) is installed. In the systemd initramfs, systemd-cryptsetup-generator turns rd.luks.uuid=
    // into the unit that asks for the passphrase ("Please enter passphrase for disk ...") and opens
    // /dev/mapper/luks-<UUID> (without systemd-cryptsetup, dracut's cryptroot-ask runs cryptsetup, which asks
    // "Enter passphrase for /dev/...:"); root=UUID= of the ext4 inside then appears (dracut.cmdline(7)). No
    // crypttab: the mapping stays after switch_root and systemd closes it at shutdown.
    luks: {
      packages: ['cryptsetup'],
      values: { dracut_modules: 'crypt' },
      cmdline: (uuid) => ({ args: [`rd.luks.uuid=${uuid}`] }),
    },
    // The setup package ships /etc/shadow as mode 0000, root:root.
    shadow: { mode: 0o000, group: null },
  };
}

export function fedoraInfo(version: string, arch: GuestArch = 'amd64'): DistroInfo {
  // systemd-boot-unsigned carries the EFI binary on Fedora (systemd-boot itself is the signed one on some releases).
  return fedoraFamily('fedora', version, `Fedora ${version}`, 'systemd-boot-unsigned', arch);
}

const EL_NAMES: Record<string, string> = {
  centos: 'CentOS Stream',
  rocky: 'Rocky Linux',
  almalinux: 'AlmaLinux',
  ol: 'Oracle Linux',
};

/** CentOS Stream, Rocky Linux, AlmaLinux (and Oracle Linux as a rebuild) 8, 9 and 10; none ships systemd-boot. */
export function enterpriseInfo(
  id: 'centos' | 'rocky' | 'almalinux' | 'ol',
  version: string,
  arch: GuestArch = 'amd64',
): DistroInfo {
  return fedoraFamily(id, version, `${EL_NAMES[id]} ${version}`, undefined, arch);
}
