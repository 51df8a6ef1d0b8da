// The OCI runtime config (config.json) and the runc command lines the runc builder uses, as pure functions of a step.

/**
 * What a package manager needs to install packages with their maintainer scripts, as root, and no more:
 * CHOWN/FOWNER/FSETID/DAC_OVERRIDE for dpkg/rpm/apk unpacking files with their owners and modes,
 * SETUID/SETGID for apt's _apt sandbox and for scripts that run as a service user, SETFCAP for postinsts
 * that setcap (ping), MKNOD for the odd package that makes a device node, KILL for scripts that stop what
 * they started, SYS_CHROOT because apk runs every package script in a chroot. Left out from docker's
 * defaults: NET_RAW, NET_BIND_SERVICE, SETPCAP, AUDIT_WRITE.
 */
export const BUILD_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_MKNOD',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];

/** A default PATH for images whose config has none (what docker gives a container). */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface StepProcess {
  /** The RUN script, handed to /bin/sh -c as docker does. */
  script: string;
  /** KEY=value, already merged (image Env, then the step's). */
  env: string[];
  uid: number;
  gid: number;
  additionalGids: number[];
  cwd: string;
  /** Share the host's network namespace (and see its resolv.conf), for steps that fetch packages. */
  network: boolean;
  /** Host file bind-mounted read-only at /etc/resolv.conf when network is set. */
  resolvConf: string;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** One rule of a runtime config's seccomp filter (OCI runtime spec, config-linux "seccomp"). */
export interface SeccompRule {
  names: string[];
  action: 'SCMP_ACT_ERRNO';
  errnoRet: number;
  args?: { index: number; value: number; valueTwo: number; op: 'SCMP_CMP_MASKED_EQ' }[];
}

export interface Seccomp {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
  syscalls: SeccompRule[];
}

const EPERM = 1;
const ENOSYS = 38; // the same number on every architecture Linux's generic syscall table serves, and on x86
const CLONE_NEWUSER = 0x10000000;

/**
 * What a build step may not ask of the kernel, refused with EPERM as if the capability were missing. The steps
 * run as root of the host's user namespace (no user namespace: see runtimeSpec), so this shuts the interfaces
 * that are reachable without the capabilities left out, or that would be the next step of an escape: loading
 * kernel code or a new kernel, rebooting, swap, mounting and the new mount API, entering or making namespaces
 * (an unprivileged user namespace would hand the step every capability inside it), the kernel keyring (not
 * namespaced), tracing and reading other processes' memory, BPF, perf and userfaultfd (the usual way into kernel
 * bugs), file handles that open files by number past the mount's root, the clock, accounting, quotas and the
 * kernel log, port I/O. Each is refused by Docker's default profile to a container with the capabilities given
 * here, so a template that builds with docker builds with runc. runc skips a name the host's own ABI does not
 * have (iopl on arm64, the 32-bit *64 time calls on x86-64) and applies the others to every ABI listed.
 */
export const SECCOMP_REFUSED: readonly string[] = [
  'kexec_load',
  'kexec_file_load',
  'reboot',
  'init_module',
  'finit_module',
  'delete_module',
  'create_module',
  'query_module',
  'get_kernel_syms',
  'swapon',
  'swapoff',
  'mount',
  'umount',
  'umount2',
  'pivot_root',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'move_mount',
  'open_tree',
  'mount_setattr',
  'unshare',
  'setns',
  'keyctl',
  'add_key',
  'request_key',
  'ptrace',
  'process_vm_readv',
  'process_vm_writev',
  'kcmp',
  'pidfd_getfd',
  'bpf',
  'perf_event_open',
  'userfaultfd',
  'open_by_handle_at',
  'settimeofday',
  'stime',
  'clock_settime',
  'clock_settime64',
  'clock_adjtime',
  'clock_adjtime64',
  'acct',
  'quotactl',
  'quotactl_fd',
  'syslog',
  'vhangup',
  'lookup_dcookie',
  'nfsservctl',
  'uselib',
  'ustat',
  'sysfs',
  '_sysctl',
  'iopl',
  'ioperm',
];

/**
 * Refused with ENOSYS, which callers take as "this kernel has no such call" and fall back from: clone3 keeps its
 * flags in memory a filter cannot read (glibc then uses clone, whose flags it can), and io_uring is a large
 * kernel interface no package manager needs.
 */
export const SECCOMP_ABSENT: readonly string[] = ['clone3', 'io_uring_setup', 'io_uring_enter', 'io_uring_register'];

/**
 * The ABIs a process of the host's architecture can call the kernel with (Node's process.arch names); others: the
 * native one only. A step of another architecture's image (--init distro for arm64 on an amd64 host) runs inside
 * binfmt_misc's user-mode emulator, a host program whose system calls are the host's: the host's list serves it too.
 */
const SECCOMP_ARCHITECTURES: Record<string, string[]> = {
  x64: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  arm64: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
  riscv64: ['SCMP_ARCH_RISCV64'],
};

/**
 * The seccomp filter of every build step: everything allowed but the calls above, and clone with CLONE_NEWUSER
 * (clone's flags are its first argument on every architecture listed). A deny list, not Docker's allow list: the
 * steps run the package managers and maintainer scripts of distributions img2vm does not pin, whose newer
 * calls an allow list would refuse as they appear, while what is shut here is named and stays shut.
 */
export function seccompProfile(arch: string): Seccomp {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: SECCOMP_ARCHITECTURES[arch] ?? [],
    syscalls: [
      { names: [...SECCOMP_REFUSED], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      {
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: CLONE_NEWUSER, valueTwo: CLONE_NEWUSER, op: 'SCMP_CMP_MASKED_EQ' }],
      },
      { names: [...SECCOMP_ABSENT], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}

export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[]; umask: number };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[] };
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    resources: { devices: { allow: boolean; access: string }[]; pids: { limit: number } };
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp: Seccomp;
  };
}

/** Forks a build may have at once: far above what a package install uses, far below what would hurt the host. */
export const PIDS_LIMIT = 4096;

/**
 * The runtime config for one RUN step, on a host of architecture arch (process.arch). Namespaces: pid, ipc,
 * uts, mount always; network only for steps that do not fetch (they get a fresh namespace with nothing but a
 * loopback device), so only package managers and downloaders can reach anything. No user namespace: the files
 * a step writes must get the owners it gives them (a user namespace would map them to an unprivileged range on
 * disk, or need that range set up on the host). The seccomp filter of seccompProfile(). /run and /tmp are
 * fresh tmpfs, so what scripts leave there is not baked into the image (as in a booted system, where both
 * start empty); core dumps are off so a crashing script leaves no core file behind.
 */
export function runtimeSpec(p: StepProcess, arch: string): OciSpec {
  const caps = [...BUILD_CAPABILITIES];
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
  ];
  if (p.network)
    mounts.push({
      destination: '/etc/resolv.conf',
      type: 'bind',
      source: p.resolvConf,
      options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'],
    });
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (!p.network) namespaces.push({ type: 'network' });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: {
        uid: p.uid,
        gid: p.gid,
        ...(p.additionalGids.length ? { additionalGids: p.additionalGids } : {}),
        umask: 0o022,
      },
      args: ['/bin/sh', '-c', p.script],
      env: p.env,
      cwd: p.cwd,
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps] },
      rlimits: [
        { type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 },
        { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
      ],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: 'localhost',
    mounts,
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }], pids: { limit: PIDS_LIMIT } },
      namespaces,
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      seccomp: seccompProfile(arch),
    },
  };
}

/** Image Env, then the step's variables over it; a PATH is added when neither has one. */
export function stepEnv(
  imageEnv: readonly string[] | null | undefined,
  step: Record<string, string>,
  home: string,
): string[] {
  const out = new Map<string, string>();
  for (const kv of imageEnv ?? []) {
    const i = kv.indexOf('=');
    if (i > 0) out.set(kv.slice(0, i), kv.slice(i + 1));
  }
  for (const [k, v] of Object.entries(step)) out.set(k, v);
  if (!out.has('PATH')) out.set('PATH', DEFAULT_PATH.slice(5));
  if (!out.has('HOME')) out.set('HOME', home);
  return [...out].map(([k, v]) => `${k}=${v}`);
}

/** Container ids carry the owner's pid, so a later run can tell a killed run's leftovers from a live one's. */
export function containerId(pid: number, nonce: string, step: number): string {
  return `img2vm-${pid}-${nonce}-${step}`;
}

/** The owner's pid of a container id made by containerId(), or undefined for anyone else's. */
export function ownerOf(id: string): number | undefined {
  const m = /^img2vm-(\d+)-[0-9a-f]+-\d+$/.exec(id);
  return m ? Number(m[1]) : undefined;
}

/** Runs the step in the foreground; runc relays signals to the container's process and exits with its status. */
export function runcRunArgv(bundle: string, id: string): string[] {
  return ['run', '--bundle', bundle, id];
}

export function runcKillArgv(id: string): string[] {
  return ['kill', id, 'KILL'];
}

/** --force kills what is still running in it and removes its state and cgroups. */
export function runcDeleteArgv(id: string): string[] {
  return ['delete', '--force', id];
}

export function runcListArgv(): string[] {
  return ['list', '--format', 'json'];
}
