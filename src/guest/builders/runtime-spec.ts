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
  };
}

/** Forks a build may have at once: far above what a package install uses, far below what would hurt the host. */
export const PIDS_LIMIT = 4096;

/**
 * The runtime config for one RUN step. Namespaces: pid, ipc, uts, mount always; network only for steps
 * that do not fetch (they get a fresh namespace with nothing but a loopback device), so only package
 * managers and downloaders can reach anything. No user namespace: files must get their real owners.
 * /run and /tmp are fresh tmpfs, so what scripts leave there is not baked into the image (as in a booted
 * system, where both start empty); core dumps are off so a crashing script leaves no core file behind.
 */
export function runtimeSpec(p: StepProcess): OciSpec {
  const caps = [...BUILD_CAPABILITIES];
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
  ];
  if (p.network) mounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: p.resolvConf, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (!p.network) namespaces.push({ type: 'network' });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: p.uid, gid: p.gid, ...(p.additionalGids.length ? { additionalGids: p.additionalGids } : {}), umask: 0o022 },
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
      maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** Image Env, then the step's variables over it; a PATH is added when neither has one. */
export function stepEnv(imageEnv: readonly string[] | null | undefined, step: Record<string, string>, home: string): string[] {
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
