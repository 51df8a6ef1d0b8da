// Full and read-only file systems, each a small tmpfs mounted by the test (as root): no space for the output, the work
// directory (TMPDIR) or the cache gives one message saying where, how much is free and how much is needed, exit 7,
// and no partial file; a read-only output directory is refused before any work; a damaged cached blob is fetched
// again (--verify-cache, or after `cache verify`).
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuiltImage } from '../../fixtures/hostile/images.js';
import { img2vm, sh, startRegistry } from './helpers.js';
import { CountingProxy, entries, lastError, lightImage, pushBuilt, writeArchive } from './robust-helpers.js';

const NO_DAEMON = { DOCKER_HOST: 'unix:///nonexistent/docker.sock' };

let tmp: string;
let img: BuiltImage;
let archive: string;
let registry: { host: string; process: ReturnType<typeof execa> };
let proxy: CountingProxy;
const mounts: string[] = [];
/** What the user saw, printed at the end (the issue asks for each fault and its message). */
const seen: string[] = [];

/** A tmpfs of `size` at a new directory below tmp (read-only with ro). */
async function smallFs(name: string, size: string, ro = false): Promise<string> {
  const dir = join(tmp, name);
  mkdirSync(dir);
  await sh('mount', ['-t', 'tmpfs', '-o', `size=${size}${ro ? ',ro' : ''}`, 'img2vm-test', dir]);
  mounts.push(dir);
  return dir;
}

function privateDir(name: string): string {
  const d = join(tmp, name);
  mkdirSync(d, { recursive: true });
  return d;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0)
    throw new Error('these tests mount small tmpfs file systems: run the e2e tests as root');
  tmp = mkdtempSync(join(tmpdir(), 'img2vm-resources-'));
  img = await lightImage(8);
  archive = join(tmp, 'light.tar');
  await writeArchive(img, archive);
  registry = await startRegistry(join(tmp, 'registry'));
  proxy = new CountingProxy(registry.host);
  await proxy.start();
  await pushBuilt(img, `${registry.host}/e2e/light:v1`, tmp);
}, 10 * 60_000);

afterAll(async () => {
  if (seen.length) console.log(`what the user saw:\n  ${seen.join('\n  ')}`);
  for (const m of mounts.reverse()) await execa('umount', [m], { reject: false });
  await proxy?.stop();
  registry?.process.kill('SIGTERM');
  await registry?.process;
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const quote = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The one error: exit 7, the no-space message naming the place and its mount, how much is free and needed. */
function expectNoSpace(
  r: { exitCode?: number; stderr: unknown },
  what: RegExp,
  area: string,
  mount: string,
  where = mount,
): void {
  const stderr = String(r.stderr);
  expect(r.exitCode, stderr).toBe(7);
  const e = lastError(stderr);
  seen.push(`${e.message}\n    hint: ${e.hint}`);
  expect(e.message).toMatch(
    new RegExp(
      `^no space left for ${what.source} in ${area} ${quote(where)}: the file system at ${quote(mount)} has \\d+(\\.\\d+)?[BKMG] free; it needs about \\d+(\\.\\d+)?[BKMG] \\(`,
    ),
  );
  expect(e.hint).toMatch(/nothing partial was kept$/);
  // One message: no second error, no cleanup failure, no internal error.
  expect(stderr.match(/img2vm: (error|cleanup)/g)).toEqual(['img2vm: error']);
  expect(stderr).not.toMatch(/internal error|corrupt|cannot reach/);
}

describe('no space left', () => {
  it('on the output file system (raw written in place): one message with the size needed, no partial file', async () => {
    const out = await smallFs('out-raw', '4m');
    writeFileSync(join(out, 'keep'), 'earlier\n');
    const work = privateDir('work-raw');
    const r = await img2vm([`oci-archive:${archive}`, '-o', join(out, 'disk.img'), '--raw', '--boot', 'bios'], {
      env: { ...NO_DAEMON, TMPDIR: work, XDG_CACHE_HOME: privateDir('xdg-raw') },
    });
    expectNoSpace(r, /the disk/, 'the output directory', out);
    expect(entries(out)).toEqual(['keep']);
    expect(entries(work)).toEqual([]);
  });

  it('on the output file system (qcow2 written directly)', async () => {
    const out = await smallFs('out-qcow2', '4m');
    const work = privateDir('work-qcow2');
    const r = await img2vm([`oci-archive:${archive}`, '-o', join(out, 'disk.qcow2'), '--raw', '--boot', 'bios'], {
      env: { ...NO_DAEMON, TMPDIR: work, XDG_CACHE_HOME: privateDir('xdg-qcow2') },
    });
    expectNoSpace(r, /the disk/, 'the output directory', out);
    expect(entries(out)).toEqual([]);
    expect(entries(work)).toEqual([]);
  });

  it('on the output file system while qemu-img converts (vmdk)', async () => {
    const out = await smallFs('out-vmdk', '4m');
    const work = privateDir('work-vmdk');
    const r = await img2vm([`oci-archive:${archive}`, '-o', join(out, 'disk.vmdk'), '--raw', '--boot', 'bios'], {
      env: { ...NO_DAEMON, TMPDIR: work, XDG_CACHE_HOME: privateDir('xdg-vmdk') },
    });
    expectNoSpace(r, /the vmdk output/, 'the output directory', out);
    expect(entries(out)).toEqual([]);
    expect(entries(work)).toEqual([]);
  });

  it('an image archive takes no room in TMPDIR: it is read where it lies, not unpacked', async () => {
    const work = await smallFs('tmp-extract', '2m');
    const out = privateDir('out-extract');
    const r = await img2vm([`oci-archive:${archive}`, '-o', join(out, 'disk.img'), '--raw', '--boot', 'bios'], {
      env: { ...NO_DAEMON, TMPDIR: work, XDG_CACHE_HOME: privateDir('xdg-extract') },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(entries(work)).toEqual([]);
    expect(entries(out)).toEqual(['disk.img']);
  });

  it('in TMPDIR while the disk is assembled there (vmdk)', async () => {
    // Room for small things, not for the disk (about 14 MiB on disk).
    const work = await smallFs('tmp-disk', '4m');
    const out = privateDir('out-tmpdisk');
    const r = await img2vm([`oci-archive:${archive}`, '-o', join(out, 'disk.vmdk'), '--raw', '--boot', 'bios'], {
      env: { ...NO_DAEMON, TMPDIR: work, XDG_CACHE_HOME: privateDir('xdg-tmpdisk') },
    });
    expectNoSpace(r, /the disk/, 'the work directory \\(TMPDIR\\)', work);
    expect(entries(work)).toEqual([]);
    expect(entries(out)).toEqual([]);
  });

  it('in the cache while blobs are pulled: not "cannot reach the registry"', async () => {
    const xdg = await smallFs('xdg-full', '2m');
    const out = privateDir('out-cache');
    const work = privateDir('work-cache');
    const r = await img2vm(
      [`docker://${registry.host}/e2e/light:v1`, '-o', join(out, 'disk.img'), '--raw', '--boot', 'bios'],
      { env: { ...NO_DAEMON, TMPDIR: work, XDG_CACHE_HOME: xdg } },
    );
    expectNoSpace(
      r,
      new RegExp(`the layers of ${quote(registry.host)}/e2e/light:v1`),
      'the cache',
      xdg,
      join(xdg, 'img2vm', 'blobs', 'sha256'),
    );
    // No partial blob; what is there is whole.
    const blobs = join(xdg, 'img2vm', 'blobs', 'sha256');
    for (const n of entries(blobs)) {
      expect(n).toMatch(/^[0-9a-f]{64}$/);
      expect(
        createHash('sha256')
          .update(readFileSync(join(blobs, n)))
          .digest('hex'),
      ).toBe(n);
    }
    expect(entries(work)).toEqual([]);
    expect(entries(out)).toEqual([]);
  });
});

describe('other file-system faults', () => {
  it('a read-only output directory is refused before any work (the image is not even looked for)', async () => {
    const ro = await smallFs('out-ro', '1m', true);
    const work = privateDir('work-ro');
    const r = await img2vm(['oci-archive:/nonexistent/image.tar', '-o', join(ro, 'disk.qcow2')], {
      env: { ...NO_DAEMON, TMPDIR: work },
    });
    expect(r.exitCode, r.all).toBe(7);
    const e = lastError(String(r.stderr));
    seen.push(`${e.message}\n    hint: ${e.hint}`);
    expect(e.message).toBe(`output directory ${ro} is on a read-only file system`);
    expect(String(r.stderr)).not.toMatch(/\[source\]/);
    expect(entries(work)).toEqual([]);
  });

  it('a cached layer whose bytes no longer match its digest is fetched again (--verify-cache, or after cache verify), and the disk is the same', async () => {
    const xdg = privateDir('xdg-damaged');
    const out = privateDir('out-damaged');
    const env = {
      ...NO_DAEMON,
      TMPDIR: privateDir('work-damaged'),
      XDG_CACHE_HOME: xdg,
      SOURCE_DATE_EPOCH: '1700000000',
    };
    const args = (name: string) => [
      `docker://${proxy.host}/e2e/light:v1`,
      '-o',
      join(out, name),
      '--raw',
      '--boot',
      'bios',
      '--seed',
      'damaged',
    ];
    const first = await img2vm(args('a.qcow2'), { env });
    expect(first.exitCode, first.all).toBe(0);
    const layer = img.layers[0]!;
    const file = join(xdg, 'img2vm', 'blobs', 'sha256', layer.digest.slice(7));
    const damage = () => {
      const bytes = readFileSync(file);
      bytes[bytes.length >> 1]! ^= 0xff;
      writeFileSync(file, bytes);
    };
    const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
    // Hashed again before use with --verify-cache.
    damage();
    let before = proxy.blobGets(layer.digest);
    const second = await img2vm([...args('b.qcow2'), '--verify-cache'], { env });
    expect(second.exitCode, second.all).toBe(0);
    expect(proxy.blobGets(layer.digest) - before).toBe(1);
    expect(sha(file)).toBe(layer.digest.slice(7));
    expect(sha(join(out, 'b.qcow2'))).toBe(sha(join(out, 'a.qcow2')));
    // Found by cache verify, which removes it; the next run (trusting the cache) fetches it again.
    damage();
    const check = await img2vm(['cache', 'verify', '--json'], { env });
    expect(check.exitCode, check.all).toBe(0);
    expect(JSON.parse(check.stdout).damaged).toEqual([{ kind: 'blob', key: layer.digest, path: file }]);
    before = proxy.blobGets(layer.digest);
    const third = await img2vm(args('c.qcow2'), { env });
    expect(third.exitCode, third.all).toBe(0);
    expect(proxy.blobGets(layer.digest) - before).toBe(1);
    expect(sha(join(out, 'c.qcow2'))).toBe(sha(join(out, 'a.qcow2')));
  });
});
