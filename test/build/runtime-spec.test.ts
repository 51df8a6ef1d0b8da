// The runc builder's config.json and runc command lines, as exact data.
import { describe, expect, it } from 'vitest';
import {
  containerId,
  ownerOf,
  runcDeleteArgv,
  runcKillArgv,
  runcListArgv,
  runcRunArgv,
  runtimeSpec,
  SECCOMP_REFUSED,
  seccompProfile,
  stepEnv,
  type StepProcess,
} from '../../src/build/runtime-spec.js';

const STEP: StepProcess = {
  script: 'apt-get update && apt-get install -y linux-image-cloud-amd64',
  env: ['PATH=/usr/bin:/bin', 'DEBIAN_FRONTEND=noninteractive', 'HOME=/root'],
  uid: 0,
  gid: 0,
  additionalGids: [],
  cwd: '/',
  network: true,
  resolvConf: '/tmp/img2vm-x/runc-bundle-y/resolv.conf',
};

const CAPS = [
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

describe('runtimeSpec', () => {
  it('a step that fetches: the host network namespace and its resolv.conf, read-only; nothing else of the host', () => {
    expect(runtimeSpec(STEP, 'x64')).toEqual({
      ociVersion: '1.0.2',
      process: {
        terminal: false,
        user: { uid: 0, gid: 0, umask: 0o022 },
        args: ['/bin/sh', '-c', 'apt-get update && apt-get install -y linux-image-cloud-amd64'],
        env: ['PATH=/usr/bin:/bin', 'DEBIAN_FRONTEND=noninteractive', 'HOME=/root'],
        cwd: '/',
        capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
        rlimits: [
          { type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 },
          { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
        ],
        noNewPrivileges: true,
      },
      root: { path: 'rootfs', readonly: false },
      hostname: 'localhost',
      mounts: [
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
        {
          destination: '/etc/resolv.conf',
          type: 'bind',
          source: '/tmp/img2vm-x/runc-bundle-y/resolv.conf',
          options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'],
        },
      ],
      linux: {
        resources: { devices: [{ allow: false, access: 'rwm' }], pids: { limit: 4096 } },
        namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
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
        seccomp: seccompProfile('x64'),
      },
    });
  });

  it('a step that does not fetch: a fresh network namespace and no resolv.conf from the host', () => {
    const s = runtimeSpec({ ...STEP, network: false, script: 'systemctl enable foo' }, 'x64');
    expect(s.linux.namespaces).toEqual([
      { type: 'pid' },
      { type: 'ipc' },
      { type: 'uts' },
      { type: 'mount' },
      { type: 'network' },
    ]);
    expect(s.mounts.map((m) => m.destination)).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/sys',
      '/run',
      '/tmp',
    ]);
    expect(s.process.args).toEqual(['/bin/sh', '-c', 'systemctl enable foo']);
  });

  it('never shares the host user, pid, ipc or mount namespace, and never grants the admin capabilities', () => {
    for (const network of [true, false]) {
      const s = runtimeSpec({ ...STEP, network }, 'x64');
      for (const ns of ['pid', 'ipc', 'uts', 'mount']) expect(s.linux.namespaces).toContainEqual({ type: ns });
      expect(s.linux.namespaces).not.toContainEqual({ type: 'user' });
      for (const cap of [
        'CAP_SYS_ADMIN',
        'CAP_NET_ADMIN',
        'CAP_SYS_MODULE',
        'CAP_SYS_PTRACE',
        'CAP_NET_RAW',
        'CAP_SYS_RAWIO',
      ])
        expect(s.process.capabilities.bounding).not.toContain(cap);
    }
  });

  it('a step as another user gets its supplementary groups', () => {
    expect(runtimeSpec({ ...STEP, uid: 1000, gid: 1000, additionalGids: [27, 100] }, 'x64').process.user).toEqual({
      uid: 1000,
      gid: 1000,
      additionalGids: [27, 100],
      umask: 0o022,
    });
  });
});

describe('the seccomp filter of a build step', () => {
  /** What the filter answers for a call with the given first argument, as the kernel would apply its rules. */
  function answer(profile: ReturnType<typeof seccompProfile>, name: string, arg0 = 0): 'allow' | number {
    for (const r of profile.syscalls) {
      if (!r.names.includes(name)) continue;
      if ((r.args ?? []).every((a) => (arg0 & a.value) === a.valueTwo)) return r.errnoRet;
    }
    return 'allow';
  }

  it('is in every step config, for the host ABIs of x86-64 and arm64 (and the native one elsewhere)', () => {
    for (const network of [true, false])
      expect(runtimeSpec({ ...STEP, network }, 'x64').linux.seccomp).toEqual(seccompProfile('x64'));
    expect(seccompProfile('x64').architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    expect(seccompProfile('arm64').architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    expect(seccompProfile('mips').architectures).toEqual([]);
    expect(seccompProfile('x64').defaultAction).toBe('SCMP_ACT_ALLOW');
  });

  it('refuses with EPERM what Docker refuses a container without CAP_SYS_ADMIN: kexec, modules, keys, mount, namespaces, tracing, bpf', () => {
    const p = seccompProfile('x64');
    for (const name of [
      'kexec_load',
      'kexec_file_load',
      'init_module',
      'finit_module',
      'delete_module',
      'keyctl',
      'add_key',
      'request_key',
      'bpf',
      'mount',
      'umount2',
      'pivot_root',
      'fsopen',
      'move_mount',
      'open_tree',
      'ptrace',
      'process_vm_readv',
      'unshare',
      'setns',
      'open_by_handle_at',
      'perf_event_open',
      'userfaultfd',
      'reboot',
      'swapon',
      'swapoff',
      'settimeofday',
      'clock_settime',
      'acct',
      'syslog',
      'iopl',
      'ioperm',
    ]) {
      expect(answer(p, name), name).toBe(1);
    }
  });

  it('refuses clone with CLONE_NEWUSER, and clone3 and io_uring as absent (ENOSYS: callers fall back)', () => {
    const p = seccompProfile('arm64');
    expect(answer(p, 'clone', 0x10000000 | 0x01200011)).toBe(1);
    expect(answer(p, 'clone', 0x01200011)).toBe('allow'); // fork's flags
    expect(answer(p, 'clone', 0x003d0f00)).toBe('allow'); // pthread_create's flags
    for (const name of ['clone3', 'io_uring_setup', 'io_uring_enter', 'io_uring_register'])
      expect(answer(p, name), name).toBe(38);
  });

  it('leaves what package managers and maintainer scripts use alone', () => {
    const p = seccompProfile('x64');
    for (const name of [
      'openat',
      'execve',
      'chown',
      'fchownat',
      'mknodat',
      'chroot',
      'setuid',
      'setgroups',
      'setxattr',
      'fsetxattr',
      'rename',
      'renameat2',
      'fsync',
      'socket',
      'connect',
      'kill',
      'wait4',
      'sethostname',
      'personality',
      'prctl',
      'capset',
    ]) {
      expect(answer(p, name), name).toBe('allow');
    }
    expect(new Set(SECCOMP_REFUSED).size).toBe(SECCOMP_REFUSED.length);
  });
});

describe('stepEnv', () => {
  it("the image's Env with the step's over it; PATH and HOME only when neither has them", () => {
    expect(
      stepEnv(['PATH=/opt/bin:/bin', 'LANG=C.UTF-8', 'X=1'], { X: '2', DEBIAN_FRONTEND: 'noninteractive' }, '/root'),
    ).toEqual(['PATH=/opt/bin:/bin', 'LANG=C.UTF-8', 'X=2', 'DEBIAN_FRONTEND=noninteractive', 'HOME=/root']);
    expect(stepEnv(null, {}, '/home/u')).toEqual([
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'HOME=/home/u',
    ]);
    expect(stepEnv(['HOME=/srv', 'A=b=c', 'junk'], {}, '/root')).toEqual([
      'HOME=/srv',
      'A=b=c',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    ]);
  });
});

describe('runc command lines', () => {
  it('run in the foreground, kill, delete --force, list', () => {
    expect(runcRunArgv('/w/runc-bundle-1', 'img2vm-42-abcd-3')).toEqual([
      'run',
      '--bundle',
      '/w/runc-bundle-1',
      'img2vm-42-abcd-3',
    ]);
    expect(runcKillArgv('img2vm-42-abcd-3')).toEqual(['kill', 'img2vm-42-abcd-3', 'KILL']);
    expect(runcDeleteArgv('img2vm-42-abcd-3')).toEqual(['delete', '--force', 'img2vm-42-abcd-3']);
    expect(runcListArgv()).toEqual(['list', '--format', 'json']);
  });

  it("container ids carry the owner's pid, and only img2vm's ids are recognised", () => {
    expect(containerId(4242, '0a1b2c3d', 7)).toBe('img2vm-4242-0a1b2c3d-7');
    expect(ownerOf('img2vm-4242-0a1b2c3d-7')).toBe(4242);
    expect(ownerOf('img2vm-4242')).toBeUndefined();
    expect(ownerOf('buildkit-4242-0a1b2c3d-7')).toBeUndefined();
  });
});
