// Boot tests of `img2vm test` / `run` under QEMU TCG on a Debian disk: pass, fail fast, --expect, login, signals.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Scope } from '../../src/core/scope.js';
import { testDisk, VmTestError, type TestOptions } from '../../src/vm/test.js';
import { REPO, sh } from './helpers.js';

/** A Debian bookworm disk (raw, MBR, BIOS GRUB, root with an empty password, no readiness marker). */
const SOURCE = process.env.IMG2VM_TEST_DISK ?? '/tmp/exp/d.raw';
const WORK = '/tmp/img2vm-e2e-vm';
const GOOD = join(WORK, 'good.raw');
const BROKEN = join(WORK, 'broken.raw');
const PART_OFFSET_MIB = 1;

async function test(o: Omit<TestOptions, 'disk'> & { disk?: string }) {
  const scope = new Scope();
  try {
    return await testDisk({ disk: GOOD, timeoutMs: 180_000, ...o }, { scope });
  } finally {
    await scope.close();
  }
}

async function failure(o: Omit<TestOptions, 'disk'> & { disk?: string }): Promise<VmTestError> {
  try {
    await test(o);
  } catch (e) {
    if (e instanceof VmTestError) return e;
    throw e;
  }
  throw new Error('the test passed but should have failed');
}

/** QEMU processes started on our work disks (by command line): none may outlive a test. */
async function qemuPids(): Promise<string[]> {
  const r = await execa('pgrep', ['-f', `qemu-system-x86_64 .*${WORK}/`], { reject: false });
  return r.stdout.split('\n').filter(Boolean);
}

describe.skipIf(!existsSync(SOURCE))('img2vm test / run on a Debian disk (TCG)', () => {
  beforeAll(async () => {
    await rm(WORK, { recursive: true, force: true });
    await mkdir(WORK, { recursive: true });
    await sh('cp', ['--sparse=always', SOURCE, GOOD]);
    // The source may have been left mounted by an earlier boot; a journal to replay makes systemd-fsck repair
    // and reboot the guest. Repair a copy of the root file system and put it back (no loop devices).
    const part = join(WORK, 'root.ext4');
    await sh('dd', [`if=${GOOD}`, `of=${part}`, 'bs=1M', `skip=${PART_OFFSET_MIB}`, 'conv=sparse', 'status=none']);
    const fsck = await execa('e2fsck', ['-fy', part], { reject: false });
    if (fsck.exitCode !== null && fsck.exitCode > 1) throw new Error(`e2fsck failed (${fsck.exitCode}): ${fsck.stdout}`);
    await sh('dd', [`if=${part}`, `of=${GOOD}`, 'bs=1M', `seek=${PART_OFFSET_MIB}`, 'conv=notrunc,sparse', 'status=none']);
    await rm(part);
    // Wipe the root file system's superblock: GRUB can no longer find its root.
    await copyFile(GOOD, BROKEN);
    await sh('dd', ['if=/dev/zero', `of=${BROKEN}`, 'bs=1024', `seek=${PART_OFFSET_MIB * 1024 + 1}`, 'count=1024', 'conv=notrunc', 'status=none']);
  });

  afterAll(async () => {
    expect(await qemuPids()).toEqual([]);
    await rm(WORK, { recursive: true, force: true });
  });

  it('passes on a good disk at the login prompt, with boot timings and a console log', async () => {
    const log = join(WORK, 'good.log');
    const r = await test({ logFile: log });
    expect(r).toMatchObject({ passed: true, matched: 'login', format: 'raw', firmware: 'bios', kernelRelease: expect.stringMatching(/^6\./) });
    const t = r.timings;
    expect(t.firmware).toBeLessThan(t.kernel!);
    expect(t.kernel).toBeLessThan(t.init!);
    expect(t.init).toBeLessThan(t.ready!);
    expect(t.ready).toBe(t.login);
    console.log(`boot timings (s): ${JSON.stringify(t)} accel=${r.accel}`);
    const text = await readFile(log, 'utf8');
    expect(text).toContain('Linux version');
    expect(text).toMatch(/^localhost login:/m);
    expect(text).not.toContain('\x1b');
  });

  it('fails fast on a disk whose root file system was wiped, with the reason', async () => {
    const t0 = Date.now();
    const e = await failure({ disk: BROKEN, timeoutMs: 240_000 });
    expect(e.exitCode).toBe(21);
    expect(e.message).toMatch(/^boot failed: GRUB entered rescue mode \(error: no such device: [0-9a-f-]+\.\)$/);
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(e.report.lastLines?.at(-1)).toMatch(/grub rescue>/);
  });

  it('--expect passes on a custom pattern', async () => {
    const r = await test({ expect: /Reached target .*multi-user\.target/ });
    expect(r).toMatchObject({ passed: true, matched: 'expect', matchedLine: expect.stringContaining('multi-user.target') });
  });

  it('--expect that never matches fails by timeout (exit 20)', async () => {
    const e = await failure({ expect: /this never appears/, timeoutMs: 8_000 });
    expect(e.exitCode).toBe(20);
    expect(e.message).toMatch(/^no console line matched \/this never appears\/ within 8 s; last console line: /);
  });

  it('--login root: --run "uname -r" passes and returns the output', async () => {
    const r = await test({ login: { user: 'root', password: '' }, command: 'uname -r' });
    expect(r.command).toEqual({ command: 'uname -r', exitCode: 0, output: r.kernelRelease });
    expect(r.login).toEqual({ user: 'root', ok: true });
  });

  it('--run false fails with exit code 24', async () => {
    const e = await failure({ login: { user: 'root', password: '' }, command: 'echo out; false' });
    expect(e.exitCode).toBe(24);
    expect(e.message).toBe('the command exited with status 1: echo out; false');
    expect(e.report.command).toMatchObject({ exitCode: 1, output: 'out' });
  });

  it.skipIf(!existsSync('/usr/lib/grub/x86_64-efi'))('boots a GPT disk with an ESP under UEFI (OVMF), from qcow2', async () => {
    // The same root file system behind GRUB for EFI at the removable path: GPT [ESP 32M, root 800M].
    const raw = join(WORK, 'uefi.raw');
    const qcow2 = join(WORK, 'uefi.qcow2');
    const cfg = join(WORK, 'early.cfg');
    const efi = join(WORK, 'BOOTX64.EFI');
    const esp = join(WORK, 'esp.fat');
    await writeFile(cfg, 'search --no-floppy --file --set=root /boot/grub/grub.cfg\nset prefix=($root)/boot/grub\n');
    await sh('grub-mkimage', ['-O', 'x86_64-efi', '-o', efi, '-p', '/boot/grub', '-c', cfg,
      'part_gpt', 'part_msdos', 'ext2', 'fat', 'normal', 'linux', 'search', 'search_fs_file', 'serial', 'terminal', 'echo', 'configfile', 'gzio']);
    await sh('truncate', ['-s', '840M', raw]);
    await sh('sfdisk', ['-q', raw], 'label: gpt\nstart=2048, size=32M, type=U\nsize=800M, type=L\n');
    await sh('truncate', ['-s', '32M', esp]);
    await sh('mkfs.fat', ['-F', '16', '-n', 'ESP', esp]);
    await sh('mmd', ['-i', esp, '::/EFI', '::/EFI/BOOT']);
    await sh('mcopy', ['-i', esp, efi, '::/EFI/BOOT/BOOTX64.EFI']);
    await sh('dd', [`if=${esp}`, `of=${raw}`, 'bs=1M', 'seek=1', 'conv=notrunc,sparse', 'status=none']);
    await sh('dd', [`if=${GOOD}`, `of=${raw}`, 'bs=1M', `skip=${PART_OFFSET_MIB}`, 'seek=33', 'count=800', 'conv=notrunc,sparse', 'status=none']);
    await sh('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
    await rm(raw);

    const r = await test({ disk: qcow2 });
    expect(r).toMatchObject({ passed: true, format: 'qcow2', firmware: 'uefi', firmwareReason: 'GPT with an EFI System partition: UEFI', matched: 'login' });
    console.log(`UEFI boot timings (s): ${JSON.stringify(r.timings)}`);
  });

  describe('through the CLI in a child process', () => {
    const child = join(REPO, 'test', 'vm', 'cli-child.mjs');

    beforeAll(async () => {
      // The child imports the compiled CLI; type errors elsewhere in the tree do not stop tsc from emitting.
      await execa('npx', ['tsc', '-p', REPO], { reject: false });
      expect(existsSync(join(REPO, 'dist', 'cli', 'vm-commands.js'))).toBe(true);
    });

    it('SIGINT stops QEMU, leaves no process behind and exits 130', async () => {
      const p = execa('node', [child, 'test', GOOD, '--timeout', '120'], { reject: false, all: true });
      await new Promise((r) => setTimeout(r, 5000));
      expect((await qemuPids()).length).toBe(1);
      p.kill('SIGINT');
      const r = await p;
      expect(r.exitCode).toBe(130);
      expect(r.all).toContain('img2vm: error: interrupted by SIGINT');
      expect(await qemuPids()).toEqual([]);
    });

    it('run: the console goes to stdout, --publish listens on 127.0.0.1 only, --timeout stops QEMU (exit 20)', async () => {
      const p = execa('node', [child, 'run', GOOD, '--timeout', '15', '--publish', '47022:22'], { reject: false, stdin: 'ignore' });
      await new Promise((r) => setTimeout(r, 5000));
      const ss = await execa('ss', ['-Hltn', 'sport = :47022'], { reject: false });
      const r = await p;
      expect(r.exitCode).toBe(20);
      expect(r.stderr).toContain('stopped QEMU after --timeout 15 s');
      expect(r.stdout).toContain('Linux version');
      if (ss.exitCode === 0) expect(ss.stdout.trim().split(/\s+/)[3]).toBe('127.0.0.1:47022');
      expect(await qemuPids()).toEqual([]);
    });
  });
});
