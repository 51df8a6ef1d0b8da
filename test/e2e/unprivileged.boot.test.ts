// Assembly without privileges, byte for byte: a user who is not root converts an OCI archive whose files carry
// owners, special modes, devices, xattrs, ACLs, holes and hard links; debugfs reads them all back (no mount),
// e2fsck is clean, the disk boots; and two seeded conversions give identical bytes in every format.
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack } from 'tar-stream';
import { writeOciArchive } from '../../fixtures/oci.js';
import { BIN, sh } from './helpers.js';

const USER = 'img2vm-e2e-nobody';
let tmp: string;
let archive: string;
let uid: number;

/** A layer tar with what only root could make on a real file system: other owners, devices, security xattrs. */
async function richLayer(): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const drained = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  const mtime = new Date('2024-03-01T12:00:00Z');
  const add = (h: Parameters<typeof p.entry>[0], body?: Buffer) =>
    new Promise<void>((res, rej) =>
      body ? p.entry(h, body, (e) => (e ? rej(e) : res())) : p.entry(h, (e) => (e ? rej(e) : res())),
    );
  await add({ name: 'bin/', type: 'directory', mode: 0o755, mtime });
  await add({ name: 'bin/busybox', mode: 0o755, mtime }, await readFile('/bin/busybox'));
  for (const a of ['sh', 'ls', 'stat', 'cat'])
    await add({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox', mtime });
  await add({ name: 'data/', type: 'directory', mode: 0o1777, mtime });
  await add({ name: 'data/setuid', mode: 0o4755, uid: 1234, gid: 5678, mtime }, Buffer.from('#!/bin/sh\n'));
  await add(
    {
      name: 'data/capped',
      mode: 0o755,
      mtime,
      pax: {
        'SCHILY.xattr.security.capability': Buffer.from('0100000200200000000000000000000000000000', 'hex').toString(
          'latin1',
        ),
        'SCHILY.xattr.user.note': 'hello',
      },
    },
    Buffer.from('x'),
  );
  await add({ name: 'data/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666, mtime });
  await add({ name: 'data/loop9', type: 'block-device', devmajor: 7, devminor: 9, mode: 0o660, gid: 6, mtime });
  await add({ name: 'data/fifo', type: 'fifo', mode: 0o644, mtime });
  await add({ name: 'data/link', type: 'link', linkname: 'data/setuid', mtime });
  await add({ name: `data/${'é'.repeat(100)}`, mode: 0o600, uid: 42, mtime }, Buffer.from('long name'));
  const sparse = Buffer.alloc(8 << 20);
  sparse.write('head', 0);
  sparse.write('tail', sparse.length - 4);
  await add({ name: 'data/sparse', mode: 0o644, mtime }, sparse);
  p.finalize();
  await drained;
  return Buffer.concat(chunks);
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-unpriv-'));
  await execa('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER], { reject: false });
  uid = Number((await sh('id', ['-u', USER])).stdout.trim());
  archive = join(tmp, 'rich.tar');
  await writeOciArchive(archive, [await richLayer()], {
    Cmd: ['/bin/sh', '-c', 'stat -c "%n %a %u:%g" /data/setuid /data/link; cat /data/capped; echo; exit 0'],
  });
  await chmod(tmp, 0o755);
  await chmod(archive, 0o644);
  // The user's own cache (kernels are fetched into it) and output directory.
  for (const d of ['cache', 'out']) {
    await sh('mkdir', [join(tmp, d)]);
    await chown(join(tmp, d), uid, uid);
  }
}, 120_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  await execa('userdel', [USER], { reject: false });
});

/** bin/img2vm as the unprivileged user, its own cache, a fixed epoch. */
function asUser(args: string[], env: Record<string, string> = {}) {
  return execa(
    'runuser',
    [
      '-u',
      USER,
      '--',
      'env',
      `HOME=${tmp}/out`,
      `XDG_CACHE_HOME=${tmp}/cache`,
      `TMPDIR=${tmp}/out`,
      'SOURCE_DATE_EPOCH=1700000000',
      'DOCKER_HOST=unix:///nonexistent',
      'CI=true',
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      BIN,
      ...args,
    ],
    { reject: false, all: true },
  );
}

const sha = async (f: string) => {
  const h = createHash('sha256');
  for await (const c of createReadStream(f)) h.update(c as Buffer);
  return h.digest('hex');
};

describe('unprivileged, reproducible assembly', () => {
  it('a user who is not root converts it; every attribute is in the ext4 the disk holds; e2fsck is clean; it boots', async () => {
    const out = join(tmp, 'out', 'rich.raw');
    const r = await asUser([
      `oci-archive:${archive}`,
      '-o',
      out,
      '--init',
      'img2vm',
      '--boot',
      'bios',
      '--seed',
      's1',
      '--json',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    expect((await stat(out)).uid).toBe(uid);
    const j = JSON.parse(r.stdout);
    const root = j.partitions.find((x: { role: string }) => x.role === 'root');
    const fs = `${out}?offset=${root.start}`;
    await sh('e2fsck', ['-fn', fs]);
    const debugfs = async (cmd: string) => (await execa('debugfs', ['-R', cmd, fs], { reject: false })).stdout;
    const statOf = async (p: string) => debugfs(`stat ${p}`);
    expect(await statOf('/data/setuid')).toMatch(/Mode:\s+04755[\s\S]*User:\s+1234\s+Group:\s+5678[\s\S]*Links: 2/);
    expect(await statOf('/data')).toMatch(/Mode:\s+01777/);
    expect(await statOf('/data/null')).toMatch(/Device major\/minor number: 01:03/);
    expect(await statOf('/data/loop9')).toMatch(/Type: block[\s\S]*Device major\/minor number: 07:09/);
    expect(await statOf('/data/fifo')).toMatch(/Type: FIFO/);
    expect(await statOf(`/data/${'é'.repeat(100)}`)).toMatch(/User:\s+42\s/);
    // the hole stays a hole: 8 MiB apparent, two blocks of data
    expect(await statOf('/data/sparse')).toMatch(/Size: 8388608[\s\S]*Blockcount: 16\b/);
    const xattrs = await debugfs('ea_list /data/capped');
    expect(xattrs).toContain('security.capability (20)');
    expect(xattrs).toMatch(/user\.note \(5\) = "hello"/);
    // and it boots, running its command, as that user too
    const t = await asUser(['test', out, '--timeout', '300', '--json']);
    expect(t.exitCode, t.all).toBe(0);
  });

  it('two conversions with one --seed and SOURCE_DATE_EPOCH are identical in every format, one after the other and at the same time', async () => {
    const formats = ['raw', 'qcow2', 'vmdk', 'vhdx', 'vhd', 'vdi', 'containerdisk', 'rootfs'];
    const ext: Record<string, string> = {
      raw: 'raw',
      qcow2: 'qcow2',
      vmdk: 'vmdk',
      vhdx: 'vhdx',
      vhd: 'vhd',
      vdi: 'vdi',
      containerdisk: 'tar',
      rootfs: 'ext4',
    };
    // The same file name in two directories: a VMDK names its own file, which is part of its bytes.
    for (const d of ['1', '2']) {
      await sh('mkdir', ['-p', join(tmp, 'out', d)]);
      await chown(join(tmp, 'out', d), uid, uid);
    }
    const file = (f: string, d: string) => join(tmp, 'out', d, `disk.${ext[f]}`);
    const convert = (f: string, d: string) =>
      asUser([`oci-archive:${archive}`, '-o', file(f, d), '--format', f, '--init', 'img2vm', '--seed', 'same', '-q']);
    for (const f of formats) {
      const [a, b] =
        f === 'qcow2' || f === 'raw'
          ? await Promise.all([convert(f, '1'), convert(f, '2')])
          : [await convert(f, '1'), await convert(f, '2')];
      expect(a.exitCode, a.all).toBe(0);
      expect(b.exitCode, b.all).toBe(0);
      expect(await sha(file(f, '2')), `${f} differs`).toBe(await sha(file(f, '1')));
    }
    // the direct-kernel output's side files too (kernel, initrd, vmlinux, runner configs)
    for (const side of ['vmlinuz', 'initrd.img', 'vmlinux', 'firecracker.json', 'cloud-hypervisor.sh']) {
      expect(await sha(join(tmp, 'out', '2', `disk.${side}`)), side).toBe(
        await sha(join(tmp, 'out', '1', `disk.${side}`)),
      );
    }
    // another seed: other ids, other bytes
    const c = await asUser([
      `oci-archive:${archive}`,
      '-o',
      join(tmp, 'out', 'other.raw'),
      '--init',
      'img2vm',
      '--seed',
      'another',
      '-q',
    ]);
    expect(c.exitCode, c.all).toBe(0);
    expect(await sha(join(tmp, 'out', 'other.raw'))).not.toBe(await sha(file('raw', '1')));
  });
  it('a user who is not root writes an encrypted root: cryptsetup reads the header and takes the passphrase, nothing of the passphrase printed', async () => {
    const pass = join(tmp, 'out', 'luks-pass');
    await writeFile(pass, 'not root, still encrypted', { mode: 0o600 });
    await chown(pass, uid, uid);
    const out = join(tmp, 'out', 'luks.raw');
    const r = await asUser([
      `oci-archive:${archive}`,
      '-o',
      out,
      '--init',
      'img2vm',
      '--boot',
      'bios',
      '--luks-password-file',
      pass,
      '--json',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).not.toContain('not root, still encrypted');
    expect((await stat(out)).uid).toBe(uid);
    const j = JSON.parse(r.stdout);
    const root = j.partitions.find((x: { role: string }) => x.role === 'root');
    // the root partition as a plain file: cryptsetup needs no device mapper to read it or test a passphrase
    const part = join(tmp, 'out', 'luks-root.img');
    await sh('dd', [
      `if=${out}`,
      `of=${part}`,
      'bs=1M',
      `skip=${root.start}`,
      `count=${root.size}`,
      'iflag=skip_bytes,count_bytes',
      'status=none',
    ]);
    const d = await sh('cryptsetup', ['luksDump', part]);
    expect(d.stdout).toMatch(/^Version:\s+2$/m);
    expect(d.stdout).toContain(`UUID:          \t${j.plan.luks.uuid}`);
    const ok = await execa('cryptsetup', ['open', '--test-passphrase', '--key-file', pass, part], { reject: false });
    expect(ok.exitCode, ok.all).toBe(0);
    await writeFile(join(tmp, 'out', 'wrong'), 'not it');
    const bad = await execa(
      'cryptsetup',
      ['open', '--test-passphrase', '--key-file', join(tmp, 'out', 'wrong'), part],
      {
        reject: false,
        all: true,
      },
    );
    expect(bad.exitCode).toBe(2);
    expect(bad.all).toContain('No key available with this passphrase');
  });
});
