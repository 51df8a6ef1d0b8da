// End to end: a debootstrapped Debian image in the Docker daemon becomes a qcow2 whose files match the image and that boots.
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { mkdir, mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flattenModel } from '../model/oci-layers.js';
import { dockerSaveLayers } from '../model/tar-reader.js';
import { debianFixture, diffTrees, dockerBuild, img2vm, readExt4, sh, type Meta } from './helpers.js';

const BASE = 'img2vm-e2e:bookworm';
const RICH = 'img2vm-e2e-rich:latest';

// A second layer with every kind of entry the flattener must carry over, and deletions that become
// whiteouts (plain and opaque) in the layer tar.
const RICH_DOCKERFILE = `FROM ${BASE}
RUN set -e; mkdir -p /srv/t /srv/opq; echo lower > /srv/opq/old; echo gone > /srv/t/gone; \\
    mkdir -p /srv/t/gonedir/sub && echo x > /srv/t/gonedir/sub/f
RUN set -e; cd /srv/t; rm -rf gone gonedir /srv/opq; mkdir /srv/opq; echo upper > /srv/opq/new; \\
    ln /usr/bin/ping hardlinked-ping; mkfifo fifo; mknod nulldev c 1 3; \\
    mkdir sticky && chmod 1777 sticky; install -m 2755 /dev/null setgid-file; \\
    echo old > old && touch -d @1000000000 old; chown 1234:4321 old; \\
    truncate -s 64M sparse && printf end >> sparse; \\
    printf 'naïve' > 'naïve-ファイル'; \\
    d=$(printf 'd%.0s' $(seq 1 200)); mkdir -p "$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d"; \\
    echo deep > "$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/$d/file"; \\
    ln -s ../../etc/os-release relative-link; ln -s /etc/os-release absolute-link
`;

let work: string;

/** A file's content as the layer model carries it here: its size and SHA-256, read in place from the archive. */
function digestOf(fd: number, offset: number, size: number): Buffer {
  const h = createHash('sha256');
  const b = Buffer.alloc(1 << 20);
  for (let done = 0; done < size;) {
    const n = readSync(fd, b, 0, Math.min(b.length, size - done), offset + done);
    if (n === 0) throw new Error(`the archive ends inside a file at ${offset + done}`);
    h.update(b.subarray(0, n));
    done += n;
  }
  return Buffer.from(`${size}:${h.digest('hex')}`, 'latin1');
}

/** What an image holds, from `docker save` through test/model's tar reader and layer model, as snapshotTree lists a tree. */
async function savedImageTree(image: string, dir: string): Promise<Map<string, Meta>> {
  await mkdir(dir, { recursive: true });
  const archive = join(dir, 'saved.tar');
  await sh('docker', ['save', '-o', archive, image]);
  try {
    const model = flattenModel(dockerSaveLayers(archive, digestOf), { sec: 0, nsec: 0 });
    const utf8 = (s: string) => Buffer.from(s, 'latin1').toString('utf8');
    const out = new Map<string, Meta>();
    for (const [p, n] of model.paths) {
      if (p === '') continue;
      const m: Meta = { type: n.kind, mode: n.meta.mode, uid: n.meta.uid, gid: n.meta.gid };
      if (n.kind === 'file') {
        const [size, sha256] = n.content!.toString('latin1').split(':');
        Object.assign(m, { size: Number(size), sha256, mtime: n.meta.mtime.sec });
      }
      if (n.kind === 'symlink') m.target = utf8(n.target!);
      out.set(utf8(p), m);
    }
    return out;
  } finally {
    await rm(archive, { force: true });
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'img2vm-e2e-'));
  await debianFixture(BASE);
  await dockerBuild(RICH, RICH_DOCKERFILE);
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('img2vm IMAGE -o disk.qcow2 (docker daemon, Debian, BIOS)', () => {
  let result: {
    output: string;
    format: string;
    diskSize: number;
    kernelVersion: string;
    guestImage: string;
    partitionTable: string;
    rootfs: { uuid: string; fsSize: number };
    timings: Record<string, number>;
  };
  let raw: string;

  it('converts the image and reports the result as JSON', async () => {
    const out = join(work, 'disk.qcow2');
    const r = await img2vm([
      RICH,
      '-o',
      out,
      '--boot',
      'bios',
      '--password',
      's3cret',
      '--hostname',
      'e2e-host',
      '--json',
    ]);
    expect(r.exitCode, r.all).toBe(0);
    result = JSON.parse(r.stdout);
    expect(result.format).toBe('qcow2');
    expect(result.partitionTable).toBe('mbr');
    expect(result.kernelVersion).toMatch(/^\d+\.\d+/);
    const info = JSON.parse((await sh('qemu-img', ['info', '--output=json', out])).stdout);
    expect(info.format).toBe('qcow2');
    expect(info['virtual-size']).toBe(result.diskSize);
    await sh('qemu-img', ['check', out]);
    // nothing but the output is left beside it
    expect((await readdir(work)).sort()).toEqual(['disk.qcow2']);
    raw = join(work, 'disk.raw');
    await sh('qemu-img', ['convert', '-O', 'raw', out, raw]);
  });

  it('has a root file system that e2fsck finds clean', async () => {
    const r = await execa('e2fsck', ['-fn', `${raw}?offset=${1024 * 1024}`], { reject: false, all: true });
    expect(r.exitCode, r.all).toBe(0);
  });

  it('holds exactly the files of the image, with owners, modes, times, links and contents', async () => {
    const ref = join(work, 'ref');
    const got = join(work, 'got');
    // The reference is the image's layers as `docker save` gives them, stacked by the layer model written from the OCI
    // image spec (test/model): the daemon path reads `docker export`, so Docker's own flattening cannot be the oracle.
    const expected = await savedImageTree(result.guestImage, ref);
    const actual = await readExt4(raw, 1024 * 1024, got);
    // Files img2vm writes on purpose (and the mount points and Docker's own files, as a daemon image may carry them).
    const ignore = (p: string) =>
      /^(\.dockerenv|lost\+found|dev(\/.*)?|proc(\/.*)?|sys(\/.*)?|boot\/grub(\/.*)?)$/.test(p) ||
      [
        'etc/fstab',
        'etc/hostname',
        'etc/hosts',
        'etc/shadow',
        'etc/machine-id',
        'etc/resolv.conf',
        'etc/mtab',
      ].includes(p);
    const diffs = diffTrees(expected, actual, ignore);
    expect(diffs.slice(0, 30)).toEqual([]);
    // spot checks of what matters most
    const a = (p: string) => actual.get(p)!;
    expect(a('usr/bin/ping').mode).toBe(0o4755);
    expect(a('srv/t/sticky').mode).toBe(0o1777);
    expect(a('srv/t/setgid-file').mode).toBe(0o2755);
    expect(a('srv/t/old')).toMatchObject({ uid: 1234, gid: 4321, mtime: 1000000000 });
    expect(a('srv/t/hardlinked-ping').ino).toBe(a('usr/bin/ping').ino);
    expect(actual.has('srv/opq/old')).toBe(false);
    expect(actual.has('srv/t/gone')).toBe(false);
    expect(actual.has('srv/t/gonedir')).toBe(false);
    await rm(ref, { recursive: true, force: true });
    await rm(got, { recursive: true, force: true });
  });

  it('keeps security.capability, fifos, device nodes and sparse files', async () => {
    const dev = `${raw}?offset=${1024 * 1024}`;
    const cap = await sh('debugfs', ['-R', 'ea_get -x /usr/bin/ping security.capability', dev]);
    expect(cap.stdout.replace(/\s+/g, ' ')).toMatch(/01 00 00 02 00 20 00 00/);
    const st = (p: string) => sh('debugfs', ['-R', `stat ${p}`, dev]).then((r) => r.stdout);
    expect(await st('/srv/t/fifo')).toMatch(/Type: FIFO/);
    // mknod nulldev c 1 3 in the image: the node keeps its type and its device number.
    expect(await st('/srv/t/nulldev')).toMatch(/Type: character special[\s\S]*Device major\/minor number: 01:03 /);
    const sparse = await st('/srv/t/sparse');
    expect(sparse).toMatch(/Size: 67108867/);
    const blocks = Number(/Blockcount: (\d+)/.exec(sparse)?.[1]);
    expect(blocks).toBeLessThan(1024); // 512-byte units: far below the 64 MiB apparent size
  });

  it('configures the guest: fstab by UUID, hostname, root password', async () => {
    const dev = `${raw}?offset=${1024 * 1024}`;
    const cat = (p: string) => sh('debugfs', ['-R', `cat ${p}`, dev]).then((r) => r.stdout);
    expect(await cat('/etc/fstab')).toContain(`UUID=${result.rootfs.uuid}\t/\text4`);
    expect((await cat('/etc/hostname')).trim()).toBe('e2e-host');
    expect(await cat('/etc/shadow')).toMatch(/^root:\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}:\d+:/m);
    expect(await cat('/boot/grub/grub.cfg')).toContain(`root=UUID=${result.rootfs.uuid}`);
  });

  it('reuses the cached guest build on a second conversion', async () => {
    const out = join(work, 'again.img');
    const r = await img2vm([RICH, '-o', out, '--boot', 'bios', '--json', '--seed', 'x']);
    expect(r.exitCode, r.all).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.guestBuildCached).toBe(true);
    expect(j.format).toBe('raw');
    await rm(out);
  });

  it('boots to the readiness marker and a login prompt under QEMU (TCG)', async () => {
    const r = await img2vm(['test', result.output, '--timeout', '400', '--json']);
    expect(r.exitCode, r.all).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.passed).toBe(true);
    expect(j.matched).toBe('marker');
    expect(j.firmware).toBe('bios');
  });
});
