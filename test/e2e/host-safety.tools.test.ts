// Hostile images against the host running img2vm, end to end: no host file reaches the disk through the image's symlinks, and no
// terminal control sequence from the image reaches the user's terminal.
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeBzImage } from '../../fixtures/debian-mirror/kernel.js';
import { layerOf, writeOciArchive } from '../../fixtures/oci.js';
import { img2vm, REPO, sh } from './helpers.js';

const MARKER = 'HOST-FILE-MARKER';
const TAG = 'img2vm-e2e-etc-symlink:1';
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-hostsafety-'));
});
afterAll(async () => {
  await execa('docker', ['rmi', '-f', TAG], { reject: false });
  await rm(tmp, { recursive: true, force: true });
});

/** busybox and a kernel img2vm accepts, so that --raw converts it with no builder and no network. */
function bootable() {
  return [
    { name: 'bin/', dir: true as const },
    { name: 'bin/busybox', mode: 0o755, content: readFileSync('/bin/busybox') },
    { name: 'bin/sh', symlink: 'busybox' },
    { name: 'boot/', dir: true as const },
    { name: 'boot/vmlinuz-6.1.0-img2vm-test', content: fakeBzImage('6.1.0-img2vm-test', 64 * 1024) },
  ];
}

describe('the daemon source reading the image own /etc files from its layer directories', () => {
  it('an image whose /etc is a symlink to a host directory gets none of that directory into the disk', async () => {
    await sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);
    // Outside every layer directory, as /etc on the host would be.
    const host = join(tmp, 'host-etc');
    await mkdir(host);
    for (const f of ['hosts', 'hostname', 'resolv.conf']) await writeFile(join(host, f), `${MARKER} ${f}\n`);
    const ctxDir = join(tmp, 'context');
    await mkdir(ctxDir);
    await writeFile(join(ctxDir, 'rootfs.tar'), await layerOf([...bootable(), { name: 'etc', symlink: host }]));
    await writeFile(join(ctxDir, 'Dockerfile'), 'FROM scratch\nADD rootfs.tar /\n');
    await sh('docker', ['build', '--network', 'host', '-q', '-t', TAG, ctxDir]);

    const disk = join(tmp, 'disk.img');
    const r = await img2vm([`docker-daemon:${TAG}`, '-o', disk, '--raw', '--boot', 'bios']);
    expect(r.exitCode, r.all).toBe(0);
    const table = JSON.parse((await sh('sfdisk', ['--json', disk])).stdout) as {
      partitiontable: { sectorsize?: number; partitions: { start: number }[] };
    };
    const root = table.partitiontable.partitions.at(-1)!;
    const out = `${disk}?offset=${root.start * (table.partitiontable.sectorsize ?? 512)}`;
    const dump = join(tmp, 'dump');
    await mkdir(dump);
    await sh('debugfs', ['-R', `rdump / ${dump}`, out]);
    // grep -r does not follow the dumped symlinks (the dumped /etc points at the host directory).
    const g = await execa('grep', ['-rl', MARKER, dump], { reject: false });
    expect(g.stdout).toBe('');
    expect(g.exitCode).toBe(1);
    // The image's /etc is its symlink again, not Docker's directory with the host's files in it.
    const stat = await sh('debugfs', ['-R', 'stat /etc', out]);
    expect(stat.stdout).toMatch(/Type: symlink/);
    expect(stat.stdout).toContain(host);
  });
});

describe('terminal control sequences from the image', () => {
  // A 314-byte name component that opens with an OSC "set the window title" sequence: refused (longer than 255 bytes),
  // and the refusal quotes it.
  const opening = '\x1b]0;IMG2VM-PWNED-TITLE\x07\x1b]52;c;cHduZWQ=\x07\x9b31m';
  const hostile = `${opening}${'A'.repeat(314 - Buffer.byteLength(opening))}`;

  it('a refused layer entry whose name holds escape sequences is quoted with them escaped', async () => {
    expect(Buffer.byteLength(hostile)).toBe(314);
    const archive = join(tmp, 'escape.tar');
    await writeOciArchive(
      archive,
      [await layerOf([...bootable(), { name: 'data/', dir: true }, { name: `data/${hostile}`, content: 'x' }])],
      { Cmd: ['/bin/sh'] },
    );
    for (const json of [false, true]) {
      const r = await img2vm([
        `oci-archive:${archive}`,
        '-o',
        join(tmp, 'escape.img'),
        '--raw',
        '--boot',
        'bios',
        ...(json ? ['--json'] : []),
      ]);
      expect(r.exitCode, r.all).toBe(10);
      for (const stream of [r.stdout, r.stderr]) {
        expect(stream, JSON.stringify(stream)).not.toMatch(/[\x07\x1b\x7f-\x9f]/);
      }
      // Still there to read, as escapes.
      expect(json ? r.stdout : r.stderr).toContain(
        json ? '\\u001b]0;IMG2VM-PWNED-TITLE\\u0007' : '\\x1b]0;IMG2VM-PWNED-TITLE\\x07',
      );
    }
  });
});
