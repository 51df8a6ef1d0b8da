// `img2vm run IMAGE` as docker run's users expect it, in two TCG boots: environment, a live volume (written from the
// guest, read-only where asked, nothing outside it reachable, owners and modes kept), a port on 127.0.0.1, the exit
// code; then a second run that converts nothing, -it under a pseudo-terminal (window size, input, Ctrl-C), -u and
// --entrypoint.
import { execa } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from './helpers.js';
import { writeBusyboxImage } from './run-image-fixture.js';

const ENV = { CI: 'true', IMG2VM_ACCEL: 'tcg' };
let work: string;
let image: string;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The JSON result `run --json` prints after the workload's output. */
function resultOf(out: string): { workload?: { status: number }; image: { converted: boolean; key: string } } {
  const at = out.lastIndexOf('\n{');
  return JSON.parse(out.slice(at + 1).replace(/\r/g, '')) as ReturnType<typeof resultOf>;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'img2vm-e2e-run-image-'));
  image = join(work, 'image.tar');
  // A file of its own makes this run's image new to the store, so the first run must convert it.
  await writeBusyboxImage(image, { Cmd: ['echo', 'hello from the image'] }, randomBytes(8).toString('hex'));
}, 60_000);
let key: string | undefined;
afterAll(async () => {
  // The disk this file's image was converted into is of no use to anyone after it: out of the user's store.
  if (key) {
    const ls = JSON.parse((await execa(BIN, ['cache', 'ls', '--json'], { env: ENV })).stdout) as {
      entries: { name: string }[];
    };
    const mine = ls.entries.filter((e) => e.name.includes(key!)).map((e) => e.name);
    if (mine.length) await execa(BIN, ['cache', 'rm', ...mine], { env: ENV });
  }
  await rm(work, { recursive: true, force: true });
});

describe('img2vm run IMAGE', () => {
  it('-i, -e, -v (rw and :ro), -w, -p and the exit code, converting the image into the store', async () => {
    const data = join(work, 'data');
    const ro = join(work, 'ro');
    await mkdir(data);
    await mkdir(ro);
    await chmod(data, 0o777);
    await writeFile(join(ro, 'ro.txt'), 'read-only content\n');
    await writeFile(join(work, 'secret.txt'), 'outside the volume\n');
    // An absolute link to a host file beside the volume: the guest resolves it in its own root, never the host's.
    await symlink(join(work, 'secret.txt'), join(data, 'escape'));
    const port = await freePort();
    // -i without -t: stdin byte for byte (every byte value, no line discipline) and its end.
    const input = randomBytes(300_000);
    const script = [
      'echo "stdin $(sha256sum | cut -d" " -f1)"',
      'echo "env K=$K FROM_IMAGE=$FROM_IMAGE"',
      'echo "cwd $(pwd)"',
      'echo written > /data/out.txt && chown 1000:1000 /data/out.txt && chmod 640 /data/out.txt',
      'cat /ro/ro.txt',
      '(echo x > /ro/new.txt) 2>/dev/null && echo ro-writable || echo ro-refused',
      'cat /data/escape 2>/dev/null || echo escape-refused',
      'mknod /data/blk b 8 0 2>/dev/null && echo mknod-allowed || echo mknod-refused',
      'mkfifo /data/fifo && echo fifo-made',
      'httpd -p 80 -h /data',
      'echo ready',
      'while [ ! -e /data/done ]; do sleep 0.2; done',
      'cat /data/done',
      'exit 7',
    ].join('; ');
    const p = execa(
      BIN,
      [
        'run',
        '--json',
        '-i',
        `oci-archive:${image}`,
        '-e',
        'K=V',
        '-v',
        `${data}:/data`,
        '-v',
        `${ro}:/ro:ro`,
        '-w',
        '/data',
        '-p',
        `${port}:80`,
        '--',
        'sh',
        '-c',
        script,
      ],
      { reject: false, env: ENV, input, timeout: 600_000 },
    );
    let out = '';
    await new Promise<void>((resolve, reject) => {
      p.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready\n')) resolve();
      });
      void p.then((r) =>
        reject(new Error(`run ended before the workload was ready (${r.exitCode}):\n${out}\n${r.stderr}`)),
      );
    });
    // The guest's web server, reached on 127.0.0.1 only, serves the file the guest wrote into the volume.
    const res = await fetch(`http://127.0.0.1:${port}/out.txt`);
    expect(await res.text()).toBe('written\n');
    // The host writes into the volume while the workload runs: it sees it and exits.
    await writeFile(join(data, 'done'), 'seen from the host\n');
    const r = await p;
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(7);
    expect(r.stdout).toContain(
      `stdin ${createHash('sha256').update(input).digest('hex')}\n` +
        'env K=V FROM_IMAGE=yes\ncwd /data\nread-only content\nro-refused\nescape-refused\nmknod-refused\nfifo-made\n',
    );
    expect(r.stdout).toContain('ready\nseen from the host\n');
    const st = await stat(join(data, 'out.txt'));
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1000, 1000, 0o640]);
    expect(await readFile(join(data, 'out.txt'), 'utf8')).toBe('written\n');
    await expect(stat(join(ro, 'new.txt'))).rejects.toThrow();
    const result = resultOf(r.stdout);
    expect(result.workload).toEqual({ status: 7 });
    expect(result.image.converted).toBe(true);
    key = result.image.key;
    const ls = await execa(BIN, ['cache', 'ls', '--json'], { env: ENV });
    expect(ls.stdout).toContain(key);
  });

  it('a second run converts nothing; -it is a terminal (window size and its changes, input, Ctrl-C), with -u and --entrypoint', async () => {
    expect(key, 'the first run gave the key').toBeDefined();
    const workload =
      'stty size; tty; id -u; trap "echo got-INT; exit 42" INT; trap "stty size" WINCH; echo ready; read l; echo got:$l; while :; do sleep 1; done';
    // A pseudo-terminal of 33 x 111 whose stdin is typed on it; SIGUSR1 makes it 40 x 100 (test/e2e/pty-driver.py).
    const p = execa(
      'python3',
      [
        join(import.meta.dirname, 'pty-driver.py'),
        BIN,
        'run',
        '--json',
        '-it',
        '-u',
        'app',
        '--entrypoint',
        'sh',
        `oci-archive:${image}`,
        '--',
        '-c',
        workload,
      ],
      { reject: false, env: ENV, stdin: 'pipe', timeout: 600_000 },
    );
    let out = '';
    const step = { typed: false, resized: false };
    await new Promise<void>((resolve, reject) => {
      p.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const plain = out.replace(/\r/g, '');
        if (!step.typed && plain.includes('ready\n')) {
          step.typed = true;
          p.stdin!.write('typed line\r');
        }
        if (!step.resized && plain.includes('got:typed line\n')) {
          step.resized = true;
          p.kill('SIGUSR1');
        }
        if (/got:typed line\n(.*\n)*40 100\n/.test(plain)) resolve();
      });
      void p.then((r) => reject(new Error(`run ended early (${r.exitCode}):\n${out}`)));
    });
    p.stdin!.write('\x03');
    const r = await p;
    expect(r.exitCode, r.stdout).toBe(42);
    const lines = r.stdout.replace(/\r/g, '');
    expect(lines).toMatch(/33 111\n\/dev\/ttyS0\n1000\nready\n/);
    expect(lines).toContain('got-INT');
    const result = resultOf(lines);
    expect(result.image).toMatchObject({ converted: false, key });
    // The store holds that one disk, taken again (its last use moved), none added.
    const ls = JSON.parse((await execa(BIN, ['cache', 'ls', '--json'], { env: ENV })).stdout) as {
      entries: { name: string }[];
    };
    expect(ls.entries.filter((e) => e.name.includes(key!))).toHaveLength(1);
  });
});
