// Guest configuration of a distribution VM, end to end: SSH login with the key given (for root and a sudo user),
// host keys made on each VM's first boot (two VMs from one disk differ), static DNS, and the entrypoint service.
import { execa, type ResultPromise } from 'execa';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, debianFixture, dockerBuild, img2vm, sh } from './helpers.js';

const IMAGE = 'img2vm-e2e-entrypoint:bookworm';
let tmp: string;
let disk: string;
const running = new Set<ResultPromise>();

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-cfg-'));
  const base = await debianFixture('img2vm-e2e:bookworm');
  await dockerBuild(
    IMAGE,
    `FROM ${base}\nENV GREETING="hello from the entrypoint"\nWORKDIR /tmp\nUSER nobody\nCMD ["/bin/sh", "-c", "echo \\"entrypoint: $GREETING as $(id -un) in $(pwd)\\""]\n`,
  );
  await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(tmp, 'key')]);
  disk = join(tmp, 'cfg.qcow2');
  const r = await img2vm([
    IMAGE,
    '-o',
    disk,
    '--boot',
    'bios',
    '--password',
    'pw',
    '--user',
    'alice',
    '--ssh-key',
    join(tmp, 'key.pub'),
    '--dns',
    '192.0.2.53',
    '--entrypoint-service',
    '--json',
  ]);
  expect(r.exitCode, r.all).toBe(0);
}, 30 * 60_000);

afterAll(async () => {
  for (const p of running) p.kill('SIGKILL');
  await rm(tmp, { recursive: true, force: true });
});

/** Boots the disk (snapshot: the disk file never changes) with SSH forwarded to a port on 127.0.0.1. */
async function boot(): Promise<{ port: number; console: () => string; stop: () => Promise<void> }> {
  const port = await freePort();
  const p = execa(BIN, ['run', disk, '--publish', `${port}:22`, '--timeout', '600'], {
    reject: false,
    stdin: 'ignore',
    all: true,
    buffer: false,
    env: { CI: 'true' },
    forceKillAfterDelay: 60_000,
  });
  running.add(p);
  let out = '';
  p.all!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const t0 = Date.now();
  while (!/img2vm-ready: /.test(out)) {
    if (Date.now() - t0 > 400_000) throw new Error(`no readiness marker:\n${out.slice(-3000)}`);
    if (p.exitCode !== null && p.exitCode !== undefined) throw new Error(`img2vm run ended:\n${out.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    port,
    console: () => out,
    stop: async () => {
      p.kill('SIGTERM');
      await p;
      running.delete(p);
    },
  };
}

async function ssh(port: number, user: string, cmd: string) {
  // sshd starts after the readiness marker on a slow first boot (host keys are made then): retry a little.
  let last = '';
  for (let i = 0; i < 30; i++) {
    const r = await execa(
      'ssh',
      [
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        `UserKnownHostsFile=${join(tmp, `known-${port}`)}`,
        '-o',
        'BatchMode=yes',
        '-o',
        'ConnectTimeout=10',
        '-i',
        join(tmp, 'key'),
        '-p',
        String(port),
        `${user}@127.0.0.1`,
        cmd,
      ],
      { reject: false, all: true },
    );
    if (r.exitCode === 0) return r.stdout;
    last = r.all ?? '';
    await new Promise((res) => setTimeout(res, 3000));
  }
  throw new Error(`ssh ${user}@127.0.0.1:${port} failed: ${last}`);
}

async function hostKey(port: number): Promise<string> {
  const r = await execa('ssh-keyscan', ['-t', 'ed25519', '-p', String(port), '127.0.0.1'], { reject: false });
  const line = r.stdout.split('\n').find((l) => l.includes('ssh-ed25519'));
  if (!line) throw new Error(`no host key from port ${port}: ${r.stderr}`);
  return line.split(' ').slice(1).join(' ');
}

describe('a distribution VM configured by the options', () => {
  it('logs in over SSH with the key as root and as the sudo user; DNS is the static server; the entrypoint ran on the console', async () => {
    const vm = await boot();
    try {
      expect(await ssh(vm.port, 'root', 'id -u')).toBe('0');
      expect(await ssh(vm.port, 'alice', 'id -un; id -Gn')).toMatch(/^alice\n.*\bsudo\b/);
      expect(await ssh(vm.port, 'alice', 'echo pw | sudo -S -p "" id -u')).toBe('0');
      expect(await ssh(vm.port, 'root', 'resolvectl dns | head -1')).toContain('192.0.2.53');
      expect(vm.console()).toContain('entrypoint: hello from the entrypoint as nobody in /tmp');
    } finally {
      await vm.stop();
    }
  });

  it('two VMs booted from one disk have different SSH host keys', async () => {
    const a = await boot();
    let keyA: string;
    try {
      await ssh(a.port, 'root', 'true');
      keyA = await hostKey(a.port);
    } finally {
      await a.stop();
    }
    const b = await boot();
    try {
      await ssh(b.port, 'root', 'true');
      expect(await hostKey(b.port)).not.toBe(keyA);
    } finally {
      await b.stop();
    }
    expect((await execa('pgrep', ['-f', disk], { reject: false })).stdout).toBe('');
  });
});
