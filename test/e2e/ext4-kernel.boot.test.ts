// Linux 6.1 (Debian's cloud kernel, under QEMU TCG) mounts a file system the ext4 writer made, reads it, writes to it; e2fsck agrees after.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import type { Node } from '../../src/rootfs/tree.js';
import {
  catFile,
  chunksOf,
  debugfs,
  dir,
  expectClean,
  file,
  meta,
  run,
  tmp,
  ts,
  writeImage,
} from '../disk/ext4/helpers.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const CACHE = join(REPO, '.cache', 'ext4-boot');
const t = tmp();
afterAll(() => t.done());

/** Downloads a Debian package from the configured archive into the cache (once) and unpacks one path of it. */
function fromDeb(pkg: string, path: RegExp): Buffer {
  mkdirSync(CACHE, { recursive: true });
  let deb = readdirSync(CACHE).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) {
    const r = spawnSync('apt-get', ['download', pkg], { cwd: CACHE, encoding: 'utf8' });
    if (r.status !== 0)
      throw new Error(`apt-get download ${pkg} failed (is the Debian archive reachable?): ${r.stderr}`);
    deb = readdirSync(CACHE).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'))!;
  }
  const unpacked = join(CACHE, `${deb}.d`);
  if (!existsSync(unpacked)) execFileSync('dpkg-deb', ['-x', join(CACHE, deb), unpacked]);
  const find = (d: string): string | undefined => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        const f = find(p);
        if (f) return f;
      } else if (path.test(p.slice(unpacked.length))) return p;
    }
    return undefined;
  };
  const hit = find(unpacked);
  if (!hit) throw new Error(`${pkg} has no file matching ${path}`);
  return readFileSync(hit);
}

/** A host program and the shared libraries ldd says it loads, as initramfs entries (for resize2fs in the guest). */
function withLibraries(program: string, as: string): Array<{ name: string; mode: number; data: Buffer }> {
  const out: Array<{ name: string; mode: number; data: Buffer }> = [
    { name: as, mode: 0o100755, data: readFileSync(program) },
  ];
  for (const m of execFileSync('ldd', [program], { encoding: 'utf8' }).matchAll(/(?:=> )?(\/\S+) \(0x/g)) {
    out.push({ name: m[1]!.slice(1), mode: 0o100755, data: readFileSync(m[1]!) });
  }
  return out;
}

/** The kernel package the cloud-amd64 metapackage points at today. */
function cloudKernelPackage(): string {
  const out = execFileSync('apt-cache', ['depends', 'linux-image-cloud-amd64'], { encoding: 'utf8' });
  const m = /Depends: (linux-image-[0-9.]+-\d+-cloud-amd64)/.exec(out);
  if (!m) throw new Error(`cannot resolve linux-image-cloud-amd64: ${out}`);
  return m[1]!;
}

/** A newc cpio archive (what the kernel unpacks as initramfs). */
function cpio(files: Array<{ name: string; mode: number; data?: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);
  let ino = 1;
  for (const f of [...files, { name: 'TRAILER!!!', mode: 0 }]) {
    const data = 'data' in f && f.data ? f.data : Buffer.alloc(0);
    const fields = [ino++, f.mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, f.name.length + 1, 0];
    const head = Buffer.from(`070701${fields.map((v) => v.toString(16).padStart(8, '0')).join('')}${f.name}\0`);
    parts.push(head, pad(head.length), data, pad(data.length));
  }
  return Buffer.concat(parts);
}

const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /mnt
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t sysfs sys /sys
i=0; while [ ! -b /dev/nvme0n1 ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done
if mount -t ext4 -o rw /dev/nvme0n1 /mnt; then
  echo "CHECK hello=$(cat /mnt/hello)"
  echo "CHECK big=$(sha256sum /mnt/data/big | cut -d' ' -f1)"
  echo "CHECK sparse=$(sha256sum /mnt/data/sparse | cut -d' ' -f1)"
  echo "CHECK entries=$(ls /mnt/many | wc -l)"
  echo "CHECK lookup=$(cat /mnt/many/entry-12345)"
  echo "CHECK owner=$(stat -c '%a %u %g %Y' /mnt/owned)"
  echo "CHECK link=$(readlink /mnt/slowlink)"
  echo "CHECK hard=$(stat -c %h /mnt/data/hard1)"
  i=0; while [ $i -lt 3000 ]; do echo $i > /mnt/many/added-$i; i=$((i+1)); done
  i=0; while [ $i -lt 500 ]; do rm /mnt/many/entry-$i; i=$((i+1)); done
  mkdir -p /mnt/new/deeper
  dd if=/dev/urandom of=/mnt/new/deeper/random bs=1M count=8 2>/dev/null
  echo more >> /mnt/hello
  rm /mnt/data/big
  sync
  echo "CHECK before=$(stat -f -c %b /mnt)"
  resize2fs /dev/nvme0n1 2>&1 | sed 's/^/RESIZE /'
  echo "CHECK after=$(stat -f -c %b /mnt)"
  dd if=/dev/urandom of=/mnt/new/after-resize bs=1M count=300 2>/dev/null && echo "CHECK grown-write=ok"
  sync
  umount /mnt && echo "CHECK umount=ok"
else
  dmesg | tail -40 | sed 's/^/FAIL /'
fi
dmesg | grep -iE 'ext4|jbd2' | sed 's/^/KMSG /'
echo IMG2VM-DONE
poweroff -f
`;

describe('Linux mounts the image', () => {
  it('reads every check back, writes, unmounts, and the result is clean for e2fsck', async () => {
    const kernel = fromDeb(cloudKernelPackage(), /^\/boot\/vmlinuz-/);
    const busybox = fromDeb('busybox-static', /^\/bin\/busybox$/);
    const initrd = t.path('initrd.gz');
    const resize = withLibraries('/usr/sbin/resize2fs', 'bin/resize2fs');
    const dirs = [
      ...new Set(
        resize.flatMap((f) =>
          f.name
            .split('/')
            .slice(0, -1)
            .map((_, i, a) => a.slice(0, i + 1).join('/')),
        ),
      ),
    ].filter((d) => d !== 'bin');
    writeFileSync(
      initrd,
      gzipSync(
        cpio([
          { name: 'bin', mode: 0o40755 },
          ...dirs.map((d) => ({ name: d, mode: 0o40755 })),
          { name: 'bin/busybox', mode: 0o100755, data: busybox },
          ...resize,
          { name: 'init', mode: 0o100755, data: Buffer.from(INIT) },
        ]),
      ),
    );
    const vmlinuz = t.path('vmlinuz');
    writeFileSync(vmlinuz, kernel);

    const img = t.path('root.img');
    const big = Buffer.from(Buffer.alloc(12 << 20).map((_, i) => (i * 2654435761) >>> 24));
    const sparse = Buffer.alloc(3000 * 4096);
    for (let i = 0; i < 3000; i += 3) sparse.fill(i & 0xff || 1, i * 4096, i * 4096 + 100);
    await writeImage(
      img,
      async (w) => {
        const many = new Map<string, Node>();
        for (let i = 0; i < 20_000; i++)
          many.set(`entry-${i}`, file(w.putBuffer(Buffer.from(`${i}\n`)), `${i}\n`.length));
        const hl = file(w.putBuffer(Buffer.from('linked')), 6);
        return dir({
          hello: file(w.putBuffer(Buffer.from('hello from img2vm')), 17),
          owned: file(
            w.putBuffer(Buffer.from('x')),
            1,
            meta(0o4750, { uid: 1234, gid: 5678, mtime: ts(2_000_000_000, 5) }),
          ),
          slowlink: { kind: 'symlink', meta: meta(0o777), target: `/${'long/'.repeat(20)}target` },
          data: dir({
            big: file(
              await w.put(chunksOf(big, 1 << 20), big.length),
              big.length,
              meta(0o644, {
                xattrs: new Map([
                  ['security.capability', Buffer.from('0100000200040000000000000000000000000000', 'hex')],
                ]),
              }),
            ),
            sparse: file(await w.put(chunksOf(sparse, 65536), sparse.length), sparse.length),
            hard1: hl,
            hard2: hl,
          }),
          many: dir(many),
        });
      },
      { sizeBytes: 256 << 20, inodeCount: 32_768 },
    );
    expectClean(img);
    // The disk is larger than the file system: the guest grows it online, as a first boot would,
    // to 72 groups, past what one descriptor block holds (a reserved descriptor block comes into use).
    truncateSync(img, 9 * 1024 ** 3);

    const r = spawnSync(
      'qemu-system-x86_64',
      [
        '-accel',
        'tcg',
        '-m',
        '512',
        '-smp',
        '1',
        '-nographic',
        '-no-reboot',
        '-nic',
        'none',
        '-kernel',
        vmlinuz,
        '-initrd',
        initrd,
        '-append',
        'console=ttyS0 panic=-1 loglevel=4',
        '-drive',
        `file=${img},if=none,id=d0,format=raw`,
        '-device',
        'nvme,drive=d0,serial=img2vm',
      ],
      { encoding: 'latin1', timeout: 5 * 60_000, maxBuffer: 1 << 26 },
    );
    const out = r.stdout ?? '';
    expect(out, out.slice(-4000)).toContain('IMG2VM-DONE');
    // The firmware's escape sequences may share a line with the first check.
    const check = (k: string): string | undefined => new RegExp(`CHECK ${k}=([^\\r\\n]*)`).exec(out)?.[1];
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(check('hello'), out.slice(-3000)).toBe('hello from img2vm');
    expect(check('big')).toBe(sha(big));
    expect(check('sparse')).toBe(sha(sparse));
    expect(check('entries')).toBe('20000');
    expect(check('lookup')).toBe('12345');
    expect(check('owner')).toBe('4750 1234 5678 2000000000');
    expect(check('link')).toBe(`/${'long/'.repeat(20)}target`);
    expect(check('hard')).toBe('2');
    // statfs blocks: the 65536-block file system less its overhead, then 9 GiB's worth after the online resize.
    const resized = out
      .split('\n')
      .filter((l) => l.includes('RESIZE '))
      .join('\n');
    expect(resized).toMatch(/on-line resizing required/);
    expect(resized).toMatch(/old_desc_blocks = 1, new_desc_blocks = 2/);
    expect(Number(check('before'))).toBeGreaterThan(50_000);
    expect(Number(check('before'))).toBeLessThan(65_536);
    expect(Number(check('after')), resized).toBeGreaterThan(2_200_000);
    expect(check('grown-write')).toBe('ok');
    expect(check('umount')).toBe('ok');
    const kmsg = out
      .split('\n')
      .filter((l) => l.includes('KMSG '))
      .join('\n');
    expect(kmsg).toMatch(/EXT4-fs \(nvme0n1\): mounted filesystem/);
    expect(kmsg).not.toMatch(/error|checksum|corrupt|warning/i);

    expectClean(img);
    expect(catFile(img, '/hello').toString()).toBe('hello from img2vmmore\n');
    expect(debugfs(img, 'stat /new/deeper/random')).toMatch(/Size: 8388608\b/);
    expect(debugfs(img, 'stat /many/added-2999')).toMatch(/Type: regular/);
    expect(debugfs(img, 'ls /many')).not.toMatch(/\bentry-499\b/);
    const h = run('dumpe2fs', ['-h', img]).out;
    expect(h).toMatch(/Block count: +2359296\n/);
    expect(h).toMatch(/Reserved GDT blocks: +254\n/);
    expect(debugfs(img, 'stat /new/after-resize')).toMatch(/Size: 314572800\b/);
    rmSync(vmlinuz);
  });
});
