// --init img2vm end to end: images with nothing bootable in them (a scratch binary, a Debian image as docker ships
// it, a busybox userland no template knows) become disks that run their workload or give a console (with
// --entrypoint-service, both), with no daemon.
import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layerOf, writeOciArchive } from '../../fixtures/oci.js';
import { debianFixture, dockerBuild, img2vm, sh } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };
const PROBE_C = `
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
  char cwd[256];
  for (int i = 0; i < argc; i++) printf("probe: argv[%d]=%s\\n", i, argv[i]);
  printf("probe: GREETING=%s\\n", getenv("GREETING") ? getenv("GREETING") : "(unset)");
  printf("probe: cwd=%s pid=%d uid=%d\\n", getcwd(cwd, sizeof cwd) ? cwd : "?", (int)getpid(), (int)getuid());
  fflush(stdout);
  return 7;
}
`;

let tmp: string;
let scratch: string;
let busybox: string;
const timings: string[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-init-'));
  await writeFile(join(tmp, 'probe.c'), PROBE_C);
  await sh('musl-gcc', ['-static', '-Os', '-o', join(tmp, 'probe'), join(tmp, 'probe.c')]);
  // scratch: one static binary, no /etc, no /proc, no shell
  scratch = join(tmp, 'scratch.tar');
  await writeOciArchive(
    scratch,
    [await layerOf([{ name: 'probe', mode: 0o755, content: await readFile(join(tmp, 'probe')) }])],
    {
      Entrypoint: ['/probe'],
      Cmd: ['one', 'two words'],
      Env: ['GREETING=hello from the image'],
      WorkingDir: '/data',
    },
  );
  // a busybox userland whose os-release names a distribution img2vm has no template for
  const applets = ['sh', 'echo', 'cat', 'ls', 'mount', 'modprobe'];
  busybox = join(tmp, 'busybox.tar');
  await writeOciArchive(
    busybox,
    [
      await layerOf([
        { name: 'bin/', dir: true },
        { name: 'bin/busybox', mode: 0o755, content: await readFile('/bin/busybox') },
        ...applets.map((a) => ({ name: `bin/${a}`, symlink: 'busybox' })),
        { name: 'etc/', dir: true },
        { name: 'etc/os-release', content: 'ID=toyos\nNAME="Toy OS"\nPRETTY_NAME="Toy OS 1.0"\nVERSION_ID=1.0\n' },
      ]),
    ],
    { Cmd: ['/bin/sh', '-c', 'echo toy: $(cat /etc/os-release | head -1); ls /lib/modules; exit 0'] },
  );
}, 120_000);

afterAll(async () => {
  if (timings.length) console.log(`--init img2vm:\n${timings.join('\n')}`);
  await rm(tmp, { recursive: true, force: true });
});

/** Converts (with no Docker daemon reachable unless env says otherwise); the JSON result. */
async function convert(src: string, out: string, args: string[] = [], env: Record<string, string> = NO_DAEMON) {
  const t0 = performance.now();
  const r = await img2vm([src, '-o', out, '--json', ...args], { env });
  expect(r.exitCode, r.all).toBe(0);
  timings.push(`convert ${out.split('/').pop()}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return JSON.parse(r.stdout) as {
    plan: { guest: { strategy: string; reason: string; init?: { mode: string } } };
    fileSize: number;
    diskSize: number;
  };
}

describe('--init img2vm', () => {
  it('a scratch image runs its ENTRYPOINT/CMD through GRUB: output on the terminal, its exit code, not PID 1', async () => {
    const out = join(tmp, 'scratch.qcow2');
    const j = await convert(`oci-archive:${scratch}`, out);
    // auto chose img2vm and said why: a scratch image has no distribution
    expect(j.plan.guest).toMatchObject({ strategy: 'img2vm', init: { mode: 'workload' } });
    expect(j.plan.guest.reason).toMatch(/no \/etc\/os-release/);
    timings.push(
      `scratch qcow2: ${(j.fileSize / 1048576).toFixed(1)} MiB on disk, ${(j.diskSize / 1048576).toFixed(0)} MiB virtual`,
    );
    const t0 = performance.now();
    const run = await execa('bin/img2vm', ['run', out, '--timeout', '300'], {
      reject: false,
      all: true,
      stdin: 'ignore',
    });
    expect(run.exitCode, run.all).toBe(7);
    expect(run.stdout).toContain('probe: argv[0]=/probe\nprobe: argv[1]=one\nprobe: argv[2]=two words');
    expect(run.stdout).toContain('probe: GREETING=hello from the image');
    expect(run.stdout).toMatch(/probe: cwd=\/data pid=(\d+) uid=0/);
    expect(Number(/pid=(\d+)/.exec(run.stdout)![1])).toBeGreaterThan(1);
    timings.push(`run scratch.qcow2 to exit: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // the test command passes it only with the status asked for
    const t = await img2vm(['test', out, '--expect-exit', '7', '--timeout', '300']);
    expect(t.exitCode, t.all).toBe(0);
  });

  it('--kernel-cmdline reaches the kernel through GRUB byte for byte, with what GRUB script reads specially quoted', async () => {
    // The kernel's own view: /proc/cmdline, read by a scratch workload.
    await writeFile(
      join(tmp, 'cmdline.c'),
      '#include <stdio.h>\nint main(void) { char b[4096]; FILE *f = fopen("/proc/cmdline", "r"); size_t n = f ? fread(b, 1, sizeof b - 1, f) : 0; b[n] = 0; if (n && b[n - 1] == 10) b[n - 1] = 0; printf("cmdline=[%s]\\n", b); return 0; }\n',
    );
    await sh('musl-gcc', ['-static', '-Os', '-o', join(tmp, 'cmdline'), join(tmp, 'cmdline.c')]);
    const image = join(tmp, 'cmdline.tar');
    await writeOciArchive(
      image,
      [await layerOf([{ name: 'cmdline', mode: 0o755, content: await readFile(join(tmp, 'cmdline')) }])],
      { Entrypoint: ['/cmdline'] },
    );
    const user = 't1=a$b t2=c;d t3={e} t4=#f "t5=g  h" t6=ok*? t7=x|y&z<w>v t8=[[ t9=é if';
    const out = join(tmp, 'cmdline.qcow2');
    const r = await img2vm([`oci-archive:${image}`, '-o', out, '--json', '--boot', 'bios', '--kernel-cmdline', user], {
      env: NO_DAEMON,
    });
    expect(r.exitCode, r.all).toBe(0);
    const p = JSON.parse(r.stdout).plan as { kernel: { kernelPath: string }; boot: { cmdline: string } };
    expect(p.boot.cmdline.endsWith(` ${user}`)).toBe(true);
    const run = await execa('bin/img2vm', ['run', out, '--timeout', '300'], {
      reject: false,
      all: true,
      stdin: 'ignore',
    });
    expect(run.exitCode, run.all).toBe(0);
    // GRUB puts BOOT_IMAGE=<the kernel it loaded> first; everything after it is the plan's command line, unchanged
    const got = /^cmdline=\[(.*)\]$/m.exec(run.stdout)?.[1];
    expect(got, run.all).toBe(`BOOT_IMAGE=${p.kernel.kernelPath} ${p.boot.cmdline}`);
  });

  it('the same image as --format rootfs boots its Firecracker config directly', async () => {
    const out = join(tmp, 'scratch.ext4');
    await convert(`oci-archive:${scratch}`, out);
    const cfg = JSON.parse(await readFile(join(tmp, 'scratch.firecracker.json'), 'utf8'));
    expect(cfg['boot-source'].boot_args).toContain('img2vm.halt=reboot');
    const r = await execa('bin/img2vm', ['run', join(tmp, 'scratch.firecracker.json'), '--timeout', '300'], {
      reject: false,
      all: true,
      stdin: 'ignore',
    });
    expect(r.exitCode, r.all).toBe(7);
    expect(r.stdout).toContain('probe: argv[2]=two words');
  });

  it('an image img2vm has no template for boots its command (auto says why), and gets the kernel modules it could load', async () => {
    const out = join(tmp, 'toy.qcow2');
    const j = await convert(`oci-archive:${busybox}`, out, ['--boot', 'bios']);
    expect(j.plan.guest.reason).toMatch(/no template for Toy OS 1.0/);
    const r = await execa('bin/img2vm', ['run', out, '--timeout', '300'], {
      reject: false,
      all: true,
      stdin: 'ignore',
    });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.stdout).toContain('toy: ID=toyos');
    // modprobe exists, so the kernel's modules are where it looks
    expect(r.stdout).toMatch(/^\d+\.\d+\.\S+-cloud-amd64$/m);
  });

  it('--password on a busybox console image without getty and login is refused before anything is written; with them it plans a login prompt', async () => {
    const consoleImage = async (name: string, applets: string[]) => {
      const file = join(tmp, `${name}.tar`);
      await writeOciArchive(
        file,
        [
          await layerOf([
            { name: 'bin/', dir: true },
            { name: 'bin/busybox', mode: 0o755, content: await readFile('/bin/busybox') },
            ...applets.map((a) => ({ name: a, symlink: '/bin/busybox' })),
          ]),
        ],
        { Cmd: ['/bin/sh'] },
      );
      return `oci-archive:${file}`;
    };
    const bare = await consoleImage('busybox-shell', ['bin/sh']);
    const outDir = join(tmp, 'refused');
    await mkdir(outDir);
    const r = await img2vm(
      [bare, '-o', join(outDir, 'disk.qcow2'), '--init', 'img2vm', '--password', 'pw', '--boot', 'bios'],
      { env: NO_DAEMON },
    );
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toMatch(/--password is for a console login, but the image has no getty and login/);
    expect(r.stderr).toMatch(/--init distro/);
    expect(await readdir(outDir)).toEqual([]);
    // the same image with busybox's getty and login applets: a login prompt, not a refusal
    const withLogin = await consoleImage('busybox-login', ['bin/sh', 'sbin/getty', 'bin/login']);
    const p = await img2vm(
      ['plan', withLogin, '-o', join(outDir, 'disk.qcow2'), '--init', 'img2vm', '--password', 'pw', '--json'],
      { env: NO_DAEMON },
    );
    expect(p.exitCode, p.all).toBe(0);
    expect(JSON.parse(p.stdout).guest.init).toMatchObject({ mode: 'console', login: true });
  });

  it('a Debian image as docker ships it (no kernel, no systemd) gives a login prompt with --password, a root shell without', async () => {
    const image = await debianFixture('img2vm-e2e:bookworm');
    const login = join(tmp, 'debian-login.qcow2');
    await convert(image, login, ['--init', 'img2vm', '--password', 'pw', '--boot', 'bios'], {});
    const t = await img2vm([
      'test',
      login,
      '--login',
      'root:pw',
      '--run',
      'cat /etc/debian_version; cat /proc/1/comm',
      '--timeout',
      '300',
      '--json',
    ]);
    expect(t.exitCode, t.all).toBe(0);
    expect(JSON.parse(t.stdout).command.output).toMatch(/^12\./);
    const shell = join(tmp, 'debian-shell.qcow2');
    await convert(image, shell, ['--init', 'img2vm', '--boot', 'bios'], {});
    const s = await img2vm(['test', shell, '--expect', 'root@[^:]*:/# ', '--timeout', '300']);
    expect(s.exitCode, s.all).toBe(0);
  });

  it('--entrypoint-service runs the image command beside the console login: its output on the console, restarted when it fails', async () => {
    const tag = 'img2vm-e2e-service:bookworm';
    await debianFixture('img2vm-e2e:bookworm');
    // A marker every second, as the image's User in its WorkingDir with its Env; the first run fails after one
    // marker, so the init's restart shows in the same boot. /tmp counts the runs (the console waits for the second).
    const script =
      'n=$(($(cat /tmp/runs 2>/dev/null || echo 0) + 1)); echo $n >/tmp/runs; ' +
      'while :; do echo "$MARK run=$n uid=$(id -u) cwd=$(pwd)"; [ $n -gt 1 ] || exit 3; sleep 1; done';
    await dockerBuild(
      tag,
      [
        'FROM img2vm-e2e:bookworm',
        'ENV MARK=img2vm-service-marker',
        'WORKDIR /srv',
        'USER nobody',
        `CMD ${JSON.stringify(['/bin/sh', '-c', script])}`,
      ].join('\n'),
    );
    const disk = join(tmp, 'debian-service.qcow2');
    let j: Awaited<ReturnType<typeof convert>>;
    try {
      j = await convert(
        tag,
        disk,
        ['--init', 'img2vm', '--entrypoint-service', '--password', 'pw', '--boot', 'bios'],
        {},
      );
    } finally {
      await sh('docker', ['rmi', tag]);
    }
    expect(j.plan.guest.init).toMatchObject({
      mode: 'console',
      argv: [],
      service: ['/bin/sh', '-c', script],
      login: true,
    });
    const log = join(tmp, 'debian-service.log');
    const run =
      'cat /proc/1/comm; id -u; until [ "$(cat /tmp/runs 2>/dev/null)" = 2 ]; do sleep 0.2; done; echo runs=2';
    const t = await img2vm([
      'test',
      disk,
      '--login',
      'root:pw',
      '--run',
      run,
      '--timeout',
      '300',
      '--log',
      log,
      '--json',
    ]);
    expect(t.exitCode, t.all).toBe(0);
    // the console is root's login, PID 1 is img2vm's init (service lines may interleave with the command's output)
    const output = JSON.parse(t.stdout).command.output as string;
    // (img2vm's init prefixes the service's lines with "service| "; one came between "init" and "0" in a suite run)
    const own = output
      .split('\n')
      .filter((l) => !l.startsWith('service| '))
      .join('\n');
    expect(own).toMatch(/^init\n0\n/);
    expect(output).toMatch(/^runs=2$/m);
    const text = await readFile(log, 'utf8');
    expect(text).toMatch(/^img2vm-init: service \/bin\/sh started \(pid \d+\)$/m);
    expect(text).toContain('service| img2vm-service-marker run=1 uid=65534 cwd=/srv\n');
    expect(text).toMatch(/^img2vm-init: service \/bin\/sh exited with status 3: restarting in 1 s$/m);
    // started before the getty, and it is the getty's login prompt the test logged in at
    expect(text.indexOf('img2vm-init: service /bin/sh started')).toBeLessThan(
      text.indexOf('img2vm-init: starting /sbin/agetty'),
    );
  });
});
