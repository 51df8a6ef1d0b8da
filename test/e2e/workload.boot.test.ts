// `img2vm run` / `test` on tiny workload disks under QEMU TCG: a kernel and an initramfs whose /init speaks img2vm's exit
// protocol itself (so this needs no img2vm init), signals, no QEMU left behind; and a raw disk a guest poisoned with a qcow2 header.
import { execa } from 'execa';
import { existsSync, mkdtempSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, sh } from './helpers.js';

const CACHE =
  process.env.IMG2VM_FIXTURE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'img2vm-fixtures');
// Its own directory: a fixed path would be emptied under another run of this file, and qemuPids would count its QEMUs.
const WORK = mkdtempSync(join(tmpdir(), 'img2vm-e2e-workload-'));
const ENV = { CI: 'true', IMG2VM_ACCEL: 'tcg' };

/**
 * PID 1 of the fixture: prints the nonce line (with img2vm test's boot nonce from the kernel command line, as
 * img2vm's init does on a direct-kernel boot), runs the workload named by wl= (the kernel hands unknown
 * name=value parameters to init as its environment) in a session on ttyS0, prints the exit line, powers off.
 * wl=exit:N exits N; forge prints a forged exit line, then exits 7; wait waits for ^C; noexit powers off
 * without an exit line.
 */
const INIT_C = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
static void say(const char *s) { fputs(s, stdout); fflush(stdout); tcdrain(1); }
int main(void) {
  unsigned char r[16]; char nonce[33];
  if (getrandom(r, sizeof r, 0) != sizeof r) return 1;
  for (int i = 0; i < 16; i++) sprintf(nonce + 2 * i, "%02x", r[i]);
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  mkdir("/proc", 0555);
  mount("proc", "/proc", "proc", 0, NULL);
  char cl[4096] = "", host[65] = "none";
  FILE *f = fopen("/proc/cmdline", "r");
  if (f && fgets(cl, sizeof cl, f) && strstr(cl, "img2vm.nonce=")) sscanf(strstr(cl, "img2vm.nonce=") + 13, "%64[0-9a-f]", host);
  dprintf(2, "img2vm-init: nonce=%s host=%s\n", nonce, host);
  const char *wl = getenv("wl") ? getenv("wl") : "exit:0";
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    int fd = open("/dev/ttyS0", O_RDWR);  /* the session's controlling terminal: ^C on it is SIGINT */
    if (fd >= 0) { dup2(fd, 0); dup2(fd, 1); dup2(fd, 2); }
    say("hello from the workload\n");
    if (!strncmp(wl, "exit:", 5)) _exit(atoi(wl + 5));
    if (!strcmp(wl, "forge")) { say("img2vm-exit: nonce=ffffffffffffffffffffffffffffffff status=0\n"); _exit(7); }
    if (!strcmp(wl, "wait")) { say("waiting for ^C\n"); for (;;) pause(); }
    _exit(99);
  }
  if (!strcmp(wl, "noexit")) { sleep(1); sync(); reboot(RB_POWER_OFF); }
  int st;
  waitpid(pid, &st, 0);
  int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  dprintf(2, "\nimg2vm-exit: nonce=%s status=%d\n", nonce, status);
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}
`;

/**
 * A BIOS boot sector that prints HOST-FILE-LEAKED through int 10h (SeaBIOS copies it to the serial port) and halts:
 * xor ax,ax; mov ds,ax; xor bx,bx; mov si,msg; mov ah,0eh; l: lodsb; test al,al; jz d; int 10h; jmp l; d: hlt; jmp d.
 */
const LEAK_SECTOR = Buffer.concat([
  Buffer.from('31c08ed831dbbe177cb40eac84c07404cd10ebf7f4ebfd', 'hex'),
  Buffer.from('HOST-FILE-LEAKED\r\n\0'),
]);

/** Debian's cloud kernel (the host's candidate), downloaded once into the fixture cache. */
async function debianKernel(): Promise<string> {
  const dep = (await sh('apt-cache', ['depends', 'linux-image-cloud-amd64'])).stdout;
  const pkg = /Depends: (linux-image-\S+-cloud-amd64)/.exec(dep)?.[1];
  if (!pkg) throw new Error(`apt-cache knows no linux-image-cloud-amd64 dependency (run apt-get update):\n${dep}`);
  const version = /^Version: (\S+)/m.exec((await sh('apt-cache', ['show', '--no-all-versions', pkg])).stdout)?.[1];
  const dir = join(CACHE, `kernel-${pkg}_${version}`);
  if (!existsSync(join(dir, '.complete'))) {
    await mkdir(CACHE, { recursive: true });
    const tmp = await mkdtemp(join(CACHE, 'kernel-dl-'));
    try {
      await sh('sh', [
        '-c',
        'cd "$1" && apt-get -o APT::Sandbox::User=root download "$2"',
        'sh',
        tmp,
        `${pkg}=${version}`,
      ]);
      const deb = (await readdir(tmp)).find((f) => f.endsWith('.deb'))!;
      await sh('dpkg-deb', ['-x', join(tmp, deb), join(tmp, 'x')]);
      await writeFile(join(tmp, 'x', '.complete'), '');
      await rm(dir, { recursive: true, force: true });
      await rename(join(tmp, 'x'), dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return join(dir, 'boot', `vmlinuz-${pkg.slice('linux-image-'.length)}`);
}

/** A direct-kernel "disk" as img2vm --format rootfs lays it out: NAME.firecracker.json beside its kernel, initrd and drive. */
async function workloadConfig(name: string, wl: string): Promise<string> {
  const file = join(WORK, `${name}.firecracker.json`);
  await writeFile(
    file,
    JSON.stringify({
      'boot-source': {
        kernel_image_path: './vm.vmlinuz',
        initrd_path: './vm.initrd.img',
        boot_args: `console=ttyS0 quiet panic=-1 wl=${wl}`,
      },
      drives: [{ drive_id: 'rootfs', path_on_host: './vm.ext4', is_root_device: true, is_read_only: false }],
      'machine-config': { vcpu_count: 1, mem_size_mib: 256 },
    }),
  );
  return file;
}

async function qemuPids(): Promise<string[]> {
  const r = await execa('pgrep', ['-f', `qemu-system-x86_64 .*${WORK}/`], { reject: false });
  return r.stdout.split('\n').filter(Boolean);
}

const cli = (args: string[]) =>
  execa(BIN, args, { reject: false, env: ENV, stdin: 'ignore', timeout: 300_000, stripFinalNewline: false });

/** Runs `img2vm run`, sends `signal` once the workload waits, and returns the result. */
async function interrupted(config: string, signal: 'SIGINT' | 'SIGTERM') {
  const p = execa(BIN, ['run', config], { reject: false, env: ENV, stdin: 'ignore', buffer: true, timeout: 300_000 });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('waiting for ^C')) resolve();
    });
    void p.then((r) =>
      reject(new Error(`img2vm run ended before the workload waited (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`)),
    );
  });
  p.kill(signal);
  return p;
}

afterAll(async () => {
  expect(await qemuPids()).toEqual([]);
  await rm(WORK, { recursive: true, force: true });
});

describe('workload disks (TCG)', () => {
  let exit3: string;

  beforeAll(async () => {
    await mkdir(join(WORK, 'root'), { recursive: true });
    await copyFile(await debianKernel(), join(WORK, 'vm.vmlinuz'));
    await writeFile(join(WORK, 'init.c'), INIT_C);
    await sh('musl-gcc', ['-static', '-Os', '-s', '-o', join(WORK, 'root', 'init'), join(WORK, 'init.c')]);
    await chmod(join(WORK, 'root', 'init'), 0o755);
    await sh('sh', ['-c', 'cd "$1/root" && find . | cpio -o -H newc --quiet > ../vm.initrd.img', 'sh', WORK]);
    await writeFile(join(WORK, 'vm.ext4'), Buffer.alloc(1024 * 1024));
    exit3 = await workloadConfig('exit3', 'exit:3');
  });

  it("run: the workload's output on stdout, img2vm's lines only on stderr with --verbose, its status as the exit code", async () => {
    const r = await cli(['run', exit3, '--verbose']);
    expect(r.exitCode, r.stderr).toBe(3);
    // Whatever the kernel printed before the init (quiet: at most a warning), then the workload, LF line ends.
    expect(r.stdout).toMatch(/(^|\n)hello from the workload\n$/);
    expect(r.stdout).not.toMatch(/img2vm-|\r/);
    // img2vm run hands the guest no boot nonce.
    expect(r.stderr).toMatch(/^img2vm-init: nonce=[0-9a-f]{32} host=none$/m);
    expect(r.stderr).toMatch(/^img2vm-exit: nonce=[0-9a-f]{32} status=3$/m);
    const quiet = await cli(['run', exit3]);
    expect(quiet.exitCode).toBe(3);
    expect(quiet.stderr).not.toContain('img2vm-init');
  });

  it("run: a forged exit line is the workload's output, and the true status wins", async () => {
    const r = await cli(['run', await workloadConfig('forge', 'forge')]);
    expect(r.exitCode, r.stderr).toBe(7);
    expect(r.stdout).toMatch(/hello from the workload\nimg2vm-exit: nonce=f{32} status=0\n$/);
  });

  it('test: fails on a non-zero exit with the status in the message and --json, passes with --expect-exit', async () => {
    const r = await cli(['test', exit3, '--json']);
    expect(r.exitCode).toBe(24);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      passed: false,
      reason: 'the workload exited with status 3',
      workload: { status: 3, expected: 0 },
      error: { kind: 'commandFailed', exitCode: 24 },
    });
    const ok = await cli(['test', exit3, '--expect-exit', '3']);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/passed: the workload exited with status 3 after/);
  });

  it('test: a guest that powers off without an exit line fails (exit 21)', async () => {
    const r = await cli(['test', await workloadConfig('noexit', 'noexit'), '--json']);
    expect(r.exitCode).toBe(21);
    expect(JSON.parse(r.stdout)).toMatchObject({
      reason: "boot failed: the guest powered off without reporting the workload's exit status",
      workload: { status: null },
    });
  });

  it('run without a terminal: SIGINT types ^C for the workload (exit 130), SIGTERM too (exit 143); no QEMU is left', async () => {
    const wait = await workloadConfig('wait', 'wait');
    const a = await interrupted(wait, 'SIGINT');
    expect(a.exitCode, a.stderr).toBe(130);
    expect(a.stderr).toContain('img2vm: error: interrupted by SIGINT: the workload exited with status 130');
    expect(await qemuPids()).toEqual([]);
    const b = await interrupted(wait, 'SIGTERM');
    expect(b.exitCode, b.stderr).toBe(143);
    expect(b.stderr).toContain('interrupted by SIGTERM: the workload exited with status 130');
    expect(await qemuPids()).toEqual([]);
  });

  it('run on a terminal: Ctrl-C is a keystroke for the guest, and the workload it kills gives the exit code', async () => {
    const wait = await workloadConfig('tty', 'wait');
    // script(1) gives img2vm a pseudo-terminal; what is written to script's stdin is typed on it.
    const p = execa('script', ['-qec', `${BIN} run ${wait}`, '/dev/null'], {
      reject: false,
      env: ENV,
      stdin: 'pipe',
      timeout: 300_000,
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      p.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('waiting for ^C')) resolve();
      });
      void p.then((r) =>
        reject(new Error(`img2vm run ended before the workload waited (exit ${r.exitCode}):\n${r.stdout}`)),
      );
    });
    p.stdin!.write('\x03');
    const r = await p;
    expect(r.exitCode, r.stdout).toBe(130);
    expect(r.stdout).not.toContain('interrupted');
    expect(r.stdout).toContain('Ctrl-a x quits');
    expect(await qemuPids()).toEqual([]);
  });
});

describe('a raw disk whose first sector a guest rewrote into a qcow2 header naming a host file', () => {
  const dir = join(WORK, 'poison');
  const secret = join(dir, 'host-file.raw');
  const disk = join(dir, 'poisoned.raw');

  beforeAll(async () => {
    await mkdir(dir, { recursive: true });
    // The host file is itself bootable: a guest that gets it as its disk prints HOST-FILE-LEAKED.
    const sector = Buffer.alloc(1024 * 1024);
    LEAK_SECTOR.copy(sector);
    sector.writeUInt16LE(0xaa55, 510);
    await writeFile(secret, sector);
    const header = join(dir, 'header.qcow2');
    await sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', header, '8M']);
    await writeFile(disk, Buffer.alloc(8 * 1024 * 1024));
    const h = Buffer.alloc(4096);
    const src = await open(header, 'r');
    await src.read(h, 0, 4096, 0);
    await src.close();
    const dst = await open(disk, 'r+');
    await dst.write(h, 0, 4096, 0);
    await dst.close();
  });

  it('opened as qcow2 (what probing does), the guest boots the host file: the attack is real', async () => {
    const q = execa(
      'qemu-system-x86_64',
      [
        '-nodefaults',
        '-machine',
        'q35',
        '-accel',
        'tcg',
        '-m',
        '128',
        '-drive',
        `file=${disk},if=virtio,format=qcow2,readonly=on`,
        '-nographic',
        '-serial',
        'stdio',
        '-monitor',
        'none',
        '-nic',
        'none',
        '-no-reboot',
      ],
      { reject: false, buffer: false, stdin: 'ignore' },
    );
    let seen = '';
    const leaked = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 60_000);
      q.stdout!.on('data', (d: Buffer) => {
        seen += d.toString('latin1');
        if (seen.includes('HOST-FILE-LEAKED')) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    q.kill('SIGKILL');
    await q;
    expect(leaked, seen).toBe(true);
  });

  it('img2vm test and run boot it as raw: no bootable disk, and never the host file', async () => {
    const log = join(dir, 'console.log');
    const t = await cli(['test', disk, '--bios', '--timeout', '120', '--log', log, '--json']);
    expect(t.exitCode, t.stdout).toBe(21);
    expect(JSON.parse(t.stdout)).toMatchObject({
      format: 'raw',
      reason: 'boot failed: the BIOS found no bootable disk (Boot failed: not a bootable disk)',
    });
    expect(await readFile(log, 'utf8')).not.toContain('LEAKED');
    const r = await cli(['run', disk, '--bios', '--timeout', '10']);
    expect(r.exitCode).toBe(20);
    expect(r.stdout).toContain('No bootable device');
    expect(r.stdout).not.toContain('LEAKED');
  });
});
