// Boots img2vm's own init under QEMU TCG with Debian's cloud kernel: scratch workloads, a Debian console, signals, systemd handover.
import { execa, type ResultPromise } from 'execa';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { img2vmInitramfsEntries, writeInitramfs, type InitModule } from '../../src/guest/initramfs.js';
import { setRootPassword, sha512Crypt } from '../../src/guest/credentials.js';
import type { InitSpec } from '../../src/guest/init-spec.js';
import { debianFixture, dockerBuild, REPO, sh } from './helpers.js';

const CACHE =
  process.env.IMG2VM_FIXTURE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'img2vm-fixtures');
const BASE = 'img2vm-e2e:bookworm';
const SYSTEMD = 'img2vm-e2e-init-systemd:bookworm';
// What Debian's cloud kernels need for a virtio disk and virtio-net, dependencies first; ext4 is built in
// (6.1 and 6.12), and so are virtio, virtio_ring and virtio_pci on 6.12: those are skipped when modules.builtin has them.
const MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'virtio_blk',
  'failover',
  'net_failover',
  'virtio_net',
];

interface Kernel {
  vmlinuz: string;
  modules: InitModule[];
}
let kernel: Kernel;
let work: string;
const running = new Set<ResultPromise>();

/** Debian's cloud kernel package (the host's candidate), downloaded once and unpacked under the fixture cache. */
async function debianKernel(): Promise<Kernel> {
  const dep = (await sh('apt-cache', ['depends', 'linux-image-cloud-amd64'])).stdout;
  const pkg = /Depends: (linux-image-\S+-cloud-amd64)/.exec(dep)?.[1];
  if (!pkg) throw new Error(`apt-cache knows no linux-image-cloud-amd64 dependency (run apt-get update):\n${dep}`);
  const version = /^Version: (\S+)/m.exec((await sh('apt-cache', ['show', '--no-all-versions', pkg])).stdout)?.[1];
  const dir = join(CACHE, `kernel-${pkg}_${version}`);
  if (!existsSync(join(dir, '.complete'))) {
    await mkdir(CACHE, { recursive: true });
    const tmp = await mkdtemp(join(CACHE, 'kernel-dl-'));
    try {
      const dl = await execa('apt-get', ['-o', 'APT::Sandbox::User=root', 'download', `${pkg}=${version}`], {
        cwd: tmp,
        reject: false,
        all: true,
      });
      if (dl.exitCode !== 0) throw new Error(`apt-get download ${pkg}=${version} failed:\n${dl.all}`);
      const deb = (await readdir(tmp)).find((f) => f.endsWith('.deb'))!;
      await sh('dpkg-deb', ['-x', join(tmp, deb), join(tmp, 'x')]);
      await writeFile(join(tmp, 'x', '.complete'), '');
      await rm(dir, { recursive: true, force: true });
      await rename(join(tmp, 'x'), dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const kver = pkg.slice('linux-image-'.length);
  const modDir = [join(dir, 'lib', 'modules', kver), join(dir, 'usr', 'lib', 'modules', kver)].find(existsSync);
  if (!modDir) throw new Error(`${pkg} has no modules directory`);
  const builtin = readFileSync(join(modDir, 'modules.builtin'), 'utf8');
  const files = (await sh('find', [join(modDir, 'kernel'), '-name', '*.ko*'])).stdout.split('\n');
  const modules: InitModule[] = [];
  for (const name of MODULES) {
    const file = files.find((f) => new RegExp(`/${name}\\.ko(\\.xz|\\.zst|\\.gz)?$`).test(f));
    if (file) modules.push({ name: file.slice(file.lastIndexOf('/') + 1), content: { path: file } });
    else if (!new RegExp(`/${name}\\.ko$`, 'm').test(builtin))
      throw new Error(`${pkg} has neither a module nor a built-in ${name}`);
  }
  return { vmlinuz: join(dir, 'boot', `vmlinuz-${kver}`), modules };
}

const PROBE_C = `
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  char cwd[256];
  /* Forgeries the host must not believe: a second nonce line and an exit line with another nonce. */
  printf("img2vm-init: nonce=ffffffffffffffffffffffffffffffff\\nimg2vm-exit: nonce=00000000000000000000000000000000 status=0\\n");
  for (int i = 0; i < argc; i++) printf("probe: argv[%d]=%s\\n", i, argv[i]);
  printf("probe: FOO=%s\\n", getenv("FOO") ? getenv("FOO") : "(unset)");
  printf("probe: cwd=%s\\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
  printf("probe: pid=%d uid=%d gid=%d\\n", (int)getpid(), (int)getuid(), (int)getgid());
  fflush(stdout);
  if (argc > 2 && !strcmp(argv[1], "signal")) raise(atoi(argv[2]));
  return argc > 2 && !strcmp(argv[1], "exit") ? atoi(argv[2]) : 0;
}
`;

/** An ext4 image of a directory, the way a test makes one (img2vm itself writes ext4 without mke2fs -d). */
async function ext4Of(dir: string, size: string): Promise<{ file: string; uuid: string }> {
  const uuid = randomUUID();
  const file = join(work, `${uuid}.ext4`);
  await sh('mke2fs', ['-q', '-t', 'ext4', '-U', uuid, '-d', dir, '-F', file, size]);
  return { file, uuid };
}

/** A docker image's file system as a directory, without Docker's /.dockerenv (systemd would think it runs in Docker). */
async function exportImage(image: string): Promise<string> {
  const dir = await mkdtemp(join(work, 'root-'));
  const id = (await sh('docker', ['create', image])).stdout.trim();
  try {
    await sh('bash', ['-o', 'pipefail', '-c', 'docker export "$0" | tar -x -C "$1"', id, dir]);
  } finally {
    await sh('docker', ['rm', id]);
  }
  await rm(join(dir, '.dockerenv'), { force: true });
  return dir;
}

async function initrdFor(spec: Omit<InitSpec, 'modules'>): Promise<string> {
  const file = join(work, `${randomUUID()}.initrd`);
  await writeFile(file, await writeInitramfs(img2vmInitramfsEntries(spec, kernel.modules)));
  return file;
}

interface Vm {
  output: () => string;
  waitFor: (re: RegExp, seconds: number) => Promise<RegExpExecArray>;
  type: (text: string) => void;
  exit: Promise<number | undefined>;
  startedAt: number;
  firstOutputAt: (re: RegExp) => number | undefined;
}

/** QEMU argv of a direct-kernel boot on the PC machine; user networking is restricted to the guest and QEMU. */
function qemuArgs(o: { initrd: string; disk: string; snapshot: boolean; net: boolean; mem: number }): string[] {
  return [
    '-accel',
    'tcg',
    '-m',
    String(o.mem),
    '-smp',
    '1',
    '-nographic',
    '-nodefaults',
    '-serial',
    'stdio',
    '-no-reboot',
    '-kernel',
    kernel.vmlinuz,
    '-initrd',
    o.initrd,
    '-append',
    'console=ttyS0 quiet panic=-1',
    '-drive',
    `file=${o.disk},if=virtio,format=raw${o.snapshot ? ',snapshot=on' : ''}`,
    ...(o.net
      ? ['-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-pci,netdev=n0,romfile=']
      : ['-nic', 'none']),
  ];
}

function boot(args: string[]): Vm {
  const startedAt = Date.now();
  const q = execa('qemu-system-x86_64', args, { reject: false, buffer: false, stdin: 'pipe', timeout: 600_000 });
  running.add(q);
  let out = '';
  const stamps: Array<[number, number]> = [];
  const listeners = new Set<() => void>();
  q.stdout!.on('data', (d: Buffer) => {
    stamps.push([out.length, Date.now()]);
    out += d.toString('latin1');
    for (const l of listeners) l();
  });
  const exit = q.then((r) => {
    running.delete(q);
    for (const l of listeners) l();
    return r.exitCode;
  });
  let ended = false;
  void exit.then(() => (ended = true));
  return {
    output: () => out,
    startedAt,
    exit,
    type: (text) => q.stdin!.write(text),
    firstOutputAt: (re) => {
      const m = re.exec(out);
      if (!m) return undefined;
      return [...stamps].reverse().find(([off]) => off <= m.index)?.[1];
    },
    waitFor: (re, seconds) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out);
          if (m) return done(() => resolve(m));
          if (ended || /Kernel panic/.test(out))
            return done(() =>
              reject(new Error(`QEMU ended (or the kernel panicked) before ${re}:\n${out.slice(-3000)}`)),
            );
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`no ${re} within ${seconds} s:\n${out.slice(-3000)}`))),
          seconds * 1000,
        );
        const done = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      }),
  };
}

/**
 * What a host concludes from the console: the first nonce line is the only true one; exit lines must carry it.
 * These plain QEMU boots hand the guest no boot nonce, and the init says so (host=none).
 */
function exitOf(console: string): { nonce: string; status: number; exitLines: number } | undefined {
  const n = /img2vm-init: nonce=([0-9a-f]{32}) host=none\r?\n/.exec(console);
  if (!n) return undefined;
  const lines = [...console.matchAll(new RegExp(`^img2vm-exit: nonce=${n[1]} status=(\\d+)\\r?$`, 'gm'))];
  return lines[0] ? { nonce: n[1]!, status: Number(lines[0][1]), exitLines: lines.length } : undefined;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'img2vm-native-init-'));
  const build = await execa('bash', [join(REPO, 'scripts', 'build-native.sh')], { reject: false, all: true });
  expect(build.exitCode, `scripts/build-native.sh failed:\n${build.all}`).toBe(0);
  kernel = await debianKernel();
});
afterEach(async () => {
  for (const q of running) q.kill('SIGKILL');
  await Promise.all([...running].map((q) => q.catch(() => undefined)));
  running.clear();
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe('a scratch image holding one static program', () => {
  let disk: { file: string; uuid: string };
  beforeAll(async () => {
    const root = join(work, 'scratch');
    await mkdir(root, { recursive: true });
    await writeFile(join(work, 'probe.c'), PROBE_C);
    const cc = await execa('musl-gcc', ['-static', '-Os', '-o', join(root, 'probe'), join(work, 'probe.c')], {
      reject: false,
      all: true,
    });
    expect(cc.exitCode, `musl-gcc (package musl-tools) failed:\n${cc.all}`).toBe(0);
    disk = await ext4Of(root, '32M');
  });

  it('runs the workload as a child with its argv, Env, WorkingDir and User, then reports its status and powers off', async () => {
    const initrd = await initrdFor({
      mode: 'workload',
      root: { uuid: disk.uuid },
      argv: ['/probe', 'exit', '3', 'two words'],
      env: ['FOO=bar baz'],
      cwd: '/work/dir',
      user: '1000:1000',
    });
    const vm = boot(qemuArgs({ initrd, disk: disk.file, snapshot: false, net: false, mem: 512 }));
    expect(await vm.exit, 'QEMU should end by itself when the guest powers off').toBe(0);
    const out = vm.output();
    expect(out).toContain(
      'probe: argv[0]=/probe\r\nprobe: argv[1]=exit\r\nprobe: argv[2]=3\r\nprobe: argv[3]=two words\r\n',
    );
    expect(out).toContain('probe: FOO=bar baz\r\n');
    expect(out).toContain('probe: cwd=/work/dir\r\n');
    const pid = Number(/probe: pid=(\d+) uid=1000 gid=1000/.exec(out)?.[1]);
    expect(pid, out).toBeGreaterThan(1);
    // The true nonce line comes before anything of the image ran; the workload's forgeries do not count.
    expect(out.indexOf('img2vm-init: nonce=')).toBeLessThan(out.indexOf('probe:'));
    expect(exitOf(out)).toMatchObject({ status: 3, exitLines: 1 });
    // Everything was synced and remounted read-only before the power-off.
    await sh('e2fsck', ['-fn', disk.file]);
    const first = vm.firstOutputAt(/probe: argv/);
    console.log(
      `scratch workload: first output ${(((first ?? 0) - vm.startedAt) / 1000).toFixed(1)} s after QEMU started`,
    );
  });

  it('reports 128+N for a workload killed by signal N', async () => {
    const initrd = await initrdFor({ mode: 'workload', root: { uuid: disk.uuid }, argv: ['/probe', 'signal', '9'] });
    const vm = boot(qemuArgs({ initrd, disk: disk.file, snapshot: true, net: false, mem: 512 }));
    expect(await vm.exit).toBe(0);
    expect(exitOf(vm.output()), vm.output()).toMatchObject({ status: 137 });
  });

  it('reports 127 with a message for a command that is not there', async () => {
    const initrd = await initrdFor({
      mode: 'workload',
      root: { uuid: disk.uuid },
      argv: ['no-such-program'],
      env: ['PATH=/bin'],
    });
    const vm = boot(qemuArgs({ initrd, disk: disk.file, snapshot: true, net: false, mem: 512 }));
    expect(await vm.exit).toBe(0);
    expect(vm.output()).toContain('img2vm-init: exec no-such-program: not found in PATH');
    expect(exitOf(vm.output()), vm.output()).toMatchObject({ status: 127 });
  });
});

describe('a Debian image', () => {
  let debian: string;
  beforeAll(async () => {
    await debianFixture(BASE);
    debian = await exportImage(BASE);
  });

  it('gives a root shell on the console, with the address DHCP gave and the hostname, and powers off when it ends', async () => {
    const disk = await ext4Of(debian, '600M');
    const initrd = await initrdFor({
      mode: 'console',
      root: { uuid: disk.uuid },
      hostname: 'native-init',
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    });
    const vm = boot(qemuArgs({ initrd, disk: disk.file, snapshot: true, net: true, mem: 512 }));
    await vm.waitFor(/root@native-init:\/# /, 240);
    // The marker is computed, so the echo of the typed line cannot match it.
    vm.type('tty; cat /proc/net/fib_trie /etc/hosts; echo "done-$((6*7))"\n');
    await vm.waitFor(/done-42/, 60);
    const out = vm.output();
    expect(out).toMatch(/img2vm-init: eth0: 10\.0\.2\.15\/255\.255\.255\.0 by DHCP/);
    expect(out).toMatch(/\|-- 10\.0\.2\.15\r?\n\s+\/32 host LOCAL/);
    expect(out).toContain('10.0.2.15\tnative-init');
    expect(out).toContain('/dev/ttyS0'); // a real tty, so the shell has job control
    vm.type('exit 5\n');
    expect(await vm.exit).toBe(0);
    expect(exitOf(vm.output())).toMatchObject({ status: 5 });
  });

  it('reaps orphans and forwards SIGTERM sent to PID 1 to the workload', async () => {
    const disk = await ext4Of(debian, '600M');
    const script = [
      '(sleep 0.2 &); (sleep 0.2 &); sleep 1',
      'echo "zombies=$(grep -l ") Z " /proc/[0-9]*/stat 2>/dev/null | wc -l)"',
      'trap "echo got-term; exit 9" TERM',
      '(sleep 1; kill -TERM 1) & sleep 300 & wait',
    ].join('; ');
    const initrd = await initrdFor({
      mode: 'workload',
      root: { uuid: disk.uuid },
      argv: ['/bin/bash', '-c', script],
      network: 'none',
    });
    const vm = boot(qemuArgs({ initrd, disk: disk.file, snapshot: true, net: false, mem: 512 }));
    expect(await vm.exit).toBe(0);
    expect(vm.output()).toContain('zombies=0');
    expect(vm.output()).toContain('got-term');
    expect(exitOf(vm.output())).toMatchObject({ status: 9 });
  });

  it('gives a login prompt on the console when root has a password, with job control after login', async () => {
    const shadow = join(debian, 'etc', 'shadow');
    const before = readFileSync(shadow, 'utf8');
    await writeFile(shadow, setRootPassword(before, sha512Crypt('s3cret', 'native1nit'), 19000));
    const disk = await ext4Of(debian, '600M');
    await writeFile(shadow, before);
    const initrd = await initrdFor({
      mode: 'console',
      login: true,
      root: { uuid: disk.uuid },
      hostname: 'native-init',
    });
    const vm = boot(qemuArgs({ initrd, disk: disk.file, snapshot: true, net: false, mem: 512 }));
    await vm.waitFor(/native-init login: $/, 240);
    vm.type('root\n');
    await vm.waitFor(/Password: $/, 60);
    vm.type('s3cret\n');
    await vm.waitFor(/root@native-init:~# $/, 120);
    vm.type('echo "in-$((2+3))"; logout\n');
    expect(await vm.exit).toBe(0);
    expect(vm.output()).toContain('in-5');
    expect(vm.output()).not.toMatch(/no job control/);
    expect(exitOf(vm.output())).toMatchObject({ status: 0 });
  });

  it("hands PID 1 over to the image's systemd, which boots to its readiness marker", async () => {
    await debianFixture(BASE);
    await dockerBuild(
      SYSTEMD,
      [
        `FROM ${BASE}`,
        'RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd-sysv && apt-get clean && rm -rf /var/lib/apt/lists/*',
        'RUN printf \'[Unit]\\nAfter=multi-user.target\\n[Service]\\nType=oneshot\\nExecStart=/bin/sh -c \\047echo "img2vm-ready: $(uname -r)" > /dev/console\\047\\n[Install]\\nWantedBy=multi-user.target\\n\' > /etc/systemd/system/img2vm-ready.service && systemctl enable img2vm-ready.service',
      ].join('\n'),
    );
    const disk = await ext4Of(await exportImage(SYSTEMD), '1G');
    const initrd = await initrdFor({ mode: 'init', root: { uuid: disk.uuid }, argv: ['/sbin/init'], network: 'none' });
    const vm = boot(qemuArgs({ initrd, disk: disk.file, snapshot: true, net: false, mem: 1024 }));
    await vm.waitFor(/img2vm-ready: \S+-cloud-amd64/, 400);
    expect(vm.output()).toMatch(/img2vm-init: handing over to the image's init \/sbin\/init/);
    expect(vm.output()).not.toMatch(/Detected virtualization docker/);
    console.log(`systemd handover: ready ${((Date.now() - vm.startedAt) / 1000).toFixed(1)} s after QEMU started`);
  });
});
