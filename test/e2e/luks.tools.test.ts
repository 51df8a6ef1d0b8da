// A LUKS2 root written by img2vm as a plain process, read by cryptsetup: luksDump, the passphrase accepted and a
// wrong one refused, the master key cryptsetup recovers decrypting the data segment to exactly the ext4 img2vm
// writes without LUKS (e2fsck-clean), and luksAddKey/luksChangeKey working on it. No device mapper is needed.
import { execa } from 'execa';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeBzImage } from '../../fixtures/debian-mirror/kernel.js';
import { layerOf, writeOciArchive } from '../../fixtures/oci.js';
import { img2vm } from './helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', SOURCE_DATE_EPOCH: '1700000000' };
const PASS = 'luks passphrase 1';
const MiB = 1024 * 1024;

let tmp: string;
let image: string;

interface Result {
  partitions: { role: string; start: number; size: number }[];
  plan: { filesystems: { role: string; offset: number; size: number }[]; luks: { uuid: string } | null };
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-luks-'));
  image = join(tmp, 'image.tar');
  await writeOciArchive(
    image,
    [
      await layerOf([
        { name: 'bin/', dir: true },
        { name: 'bin/busybox', mode: 0o755, content: readFileSync('/bin/busybox') },
        { name: 'bin/sh', symlink: 'busybox' },
        { name: 'boot/', dir: true },
        { name: 'boot/vmlinuz-6.1.0-img2vm-test', content: fakeBzImage('6.1.0-img2vm-test', 64 * 1024) },
        { name: 'secret.txt', content: 'only readable after unlocking\n' },
      ]),
    ],
    { Cmd: ['/bin/sh'] },
  );
  await writeFile(join(tmp, 'pass'), `${PASS}\n`);
  await writeFile(join(tmp, 'pass-exact'), PASS);
  await writeFile(join(tmp, 'master.key'), randomBytes(64));
}, 60_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function convert(out: string, args: string[]): Promise<{ json: Result; all: string }> {
  const r = await img2vm(
    [`oci-archive:${image}`, '--raw', '--boot', 'bios', '--seed', 'luks', '-o', out, '--json', '-v', ...args],
    {
      env: NO_DAEMON,
    },
  );
  expect(r.exitCode, r.all).toBe(0);
  return { json: JSON.parse(r.stdout) as Result, all: r.all ?? '' };
}

/** Copies bytes [offset, offset+size) of a file into a new file. */
function extract(src: string, offset: number, size: number, dest: string): void {
  const i = openSync(src, 'r');
  const o = openSync(dest, 'w');
  const buf = Buffer.alloc(4 * MiB);
  for (let done = 0; done < size;) {
    const n = readSync(i, buf, 0, Math.min(buf.length, size - done), offset + done);
    writeSync(o, buf, 0, n, done);
    done += n;
  }
  closeSync(i);
  closeSync(o);
}

/** aes-xts-plain64 decryption of a data segment, 512-byte sectors numbered from its start (the test's own code). */
function decrypt(file: string, offset: number, size: number, key: Buffer, dest: string): void {
  const i = openSync(file, 'r');
  const o = openSync(dest, 'w');
  const buf = Buffer.alloc(MiB);
  const iv = Buffer.alloc(16);
  for (let done = 0; done < size; done += buf.length) {
    readSync(i, buf, 0, buf.length, offset + done);
    for (let s = 0; s < buf.length; s += 512) {
      iv.writeBigUInt64LE(BigInt((done + s) / 512));
      const d = createDecipheriv('aes-256-xts', key, iv);
      d.update(buf.subarray(s, s + 512)).copy(buf, s);
    }
    writeSync(o, buf, 0, Math.min(buf.length, size - done), done);
  }
  closeSync(i);
  closeSync(o);
}

const cs = (args: string[]) => execa('cryptsetup', args, { reject: false, all: true });

describe('a LUKS2 root written without root', () => {
  let enc: Result;
  let part: string;

  beforeAll(async () => {
    const out = join(tmp, 'enc.img');
    const r = await convert(out, [
      '--luks-password-file',
      join(tmp, 'pass'),
      '--luks-master-key-file',
      join(tmp, 'master.key'),
    ]);
    enc = r.json;
    // the passphrase is in no output: not the JSON result (with its plan), not the verbose log
    expect(r.all).not.toContain(PASS);
    const root = enc.partitions.find((p) => p.role === 'root')!;
    part = join(tmp, 'root-partition.img');
    extract(out, root.start, root.size, part);
  }, 600_000);

  it('cryptsetup luksDump reads it: LUKS2, one PBKDF2-SHA256 keyslot, aes-xts-plain64 in 512-byte sectors', async () => {
    const d = await cs(['luksDump', part]);
    expect(d.exitCode, d.all).toBe(0);
    expect(d.stdout).toMatch(/Version:\s+2/);
    expect(d.stdout).toContain(`UUID:          \t${enc.plan.luks!.uuid}`);
    expect(d.stdout).toMatch(/cipher: aes-xts-plain64\n\s+sector: 512 \[bytes\]/);
    expect(d.stdout).toMatch(/PBKDF:\s+pbkdf2\n\s+Hash:\s+sha256\n\s+Iterations: 600000/);
    expect(d.stdout).toMatch(/AF stripes: 4000/);
  });

  it('opens with the passphrase (the file without its newline) and refuses a wrong one', async () => {
    expect((await cs(['open', '--test-passphrase', '--key-file', join(tmp, 'pass-exact'), part])).exitCode).toBe(0);
    await writeFile(join(tmp, 'wrong'), 'not it');
    const w = await cs(['open', '--test-passphrase', '--key-file', join(tmp, 'wrong'), part]);
    expect(w.exitCode).toBe(2);
    expect(w.all).toContain('No key available with this passphrase');
  });

  it('decrypts (with the key cryptsetup takes from the keyslot) to exactly the ext4 written without LUKS', async () => {
    const vk = join(tmp, 'volume.key');
    const dump = await cs([
      'luksDump',
      '--dump-volume-key',
      '--volume-key-file',
      vk,
      '--key-file',
      join(tmp, 'pass-exact'),
      '--batch-mode',
      part,
    ]);
    expect(dump.exitCode, dump.all).toBe(0);
    expect(readFileSync(vk).equals(readFileSync(join(tmp, 'master.key')))).toBe(true);

    const plainOut = join(tmp, 'plain.img');
    const plain = (await convert(plainOut, ['--boot-partition', '512M'])).json;
    const pfs = plain.plan.filesystems.find((f) => f.role === 'root')!;
    const efs = enc.plan.filesystems.find((f) => f.role === 'root')!;
    expect(efs.size).toBe(pfs.size);
    const root = enc.partitions.find((p) => p.role === 'root')!;
    expect(efs.offset - root.start).toBe(16 * MiB);
    decrypt(part, 16 * MiB, efs.size, readFileSync(vk), join(tmp, 'decrypted.fs'));
    extract(plainOut, pfs.offset, pfs.size, join(tmp, 'plain.fs'));
    expect((await execa('cmp', [join(tmp, 'decrypted.fs'), join(tmp, 'plain.fs')], { reject: false })).exitCode).toBe(
      0,
    );
    const fsck = await execa('e2fsck', ['-fn', join(tmp, 'decrypted.fs')], { reject: false, all: true });
    expect(fsck.exitCode, fsck.all).toBe(0);
    const cat = await execa('debugfs', ['-R', 'cat /secret.txt', join(tmp, 'decrypted.fs')]);
    expect(cat.stdout).toBe('only readable after unlocking');
    // and the ciphertext does not hold it
    expect(readFileSync(part).includes('only readable after unlocking')).toBe(false);
  }, 600_000);

  it('takes a second passphrase with luksAddKey and a changed one with luksChangeKey', async () => {
    const copy = join(tmp, 'copy.img');
    extract(part, 0, 20 * MiB, copy);
    await writeFile(join(tmp, 'second'), 'second passphrase');
    await writeFile(join(tmp, 'third'), 'third passphrase');
    const fast = ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'];
    const add = await cs([
      'luksAddKey',
      '--batch-mode',
      ...fast,
      '--key-file',
      join(tmp, 'pass-exact'),
      copy,
      join(tmp, 'second'),
    ]);
    expect(add.exitCode, add.all).toBe(0);
    expect((await cs(['open', '--test-passphrase', '--key-file', join(tmp, 'second'), copy])).exitCode).toBe(0);
    const change = await cs([
      'luksChangeKey',
      '--batch-mode',
      ...fast,
      '--key-file',
      join(tmp, 'second'),
      copy,
      join(tmp, 'third'),
    ]);
    expect(change.exitCode, change.all).toBe(0);
    expect((await cs(['open', '--test-passphrase', '--key-file', join(tmp, 'third'), copy])).exitCode).toBe(0);
    expect((await cs(['open', '--test-passphrase', '--key-file', join(tmp, 'second'), copy])).exitCode).toBe(2);
    expect((await cs(['open', '--test-passphrase', '--key-file', join(tmp, 'pass-exact'), copy])).exitCode).toBe(0);
  }, 600_000);

  it('draws a new master key on every run, --seed or not: the same options give another keyslot', async () => {
    const a = join(tmp, 'a.img');
    const b = join(tmp, 'b.img');
    const ra = (await convert(a, ['--luks-password', PASS])).json;
    await convert(b, ['--luks-password', PASS]);
    const root = ra.partitions.find((p) => p.role === 'root')!;
    const slot = (f: string) => {
      const buf = Buffer.alloc(256_000);
      const fd = openSync(f, 'r');
      readSync(fd, buf, 0, buf.length, root.start + 32768);
      closeSync(fd);
      return buf;
    };
    expect(slot(a).equals(slot(b))).toBe(false);
  }, 600_000);
});
