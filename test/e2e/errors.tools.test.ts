// Every error a user can cause: one line with a hint, its own exit code, and nothing left behind.
import { execa } from 'execa';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { debianFixture, dockerBuild, img2vm } from './helpers.js';
import { dockerContainersFrom, interruptAt, lastError, processesNaming } from './robust-helpers.js';

const BASE = 'img2vm-e2e:bookworm';
const OWN = 'img2vm-e2e-errors:ctrl-c';
let work: string;
let tmp: string;

async function importTar(tag: string, files: Record<string, string>) {
  const p = tar.pack();
  for (const [name, body] of Object.entries(files)) p.entry({ name, mode: 0o644 }, body);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  await execa('docker', ['import', '-', tag], { input: Buffer.concat(chunks) });
}

/** Runs img2vm with a private TMPDIR so leftovers can be seen. */
async function run(args: string[], env: Record<string, string> = {}) {
  const r = await img2vm(args, { env: { TMPDIR: tmp, ...env } });
  return r;
}

async function nothingLeft(dir = work) {
  expect(await readdir(dir)).toEqual([]);
  expect(await readdir(tmp)).toEqual([]);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'img2vm-err-'));
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-errtmp-'));
  await debianFixture(BASE);
  await importTar('img2vm-e2e-toyos:latest', { 'etc/os-release': 'ID=toyos\nPRETTY_NAME="Toy OS 1.0"\n' });
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(tmp, { recursive: true, force: true });
});

function oneLine(stderr: string, re: RegExp) {
  // progress lines come first; the error is the last two lines: the message and its hint
  const lines = stderr.trim().split('\n').slice(-2);
  expect(lines[0]).toMatch(/^img2vm: error: /);
  expect(lines[0]).toMatch(re);
  expect(lines[1]).toMatch(/^ {2}hint: /);
}

describe('user errors', () => {
  it('image not in the daemon → exit 3', async () => {
    const r = await run(['no-such-image:nope', '-o', join(work, 'd.qcow2')]);
    expect(r.exitCode).toBe(3);
    oneLine(r.stderr, /not in the local Docker daemon/);
    await nothingLeft();
  });

  it('daemon not reachable → exit 4', async () => {
    const r = await run([BASE, '-o', join(work, 'd.qcow2')], { DOCKER_HOST: 'unix:///nonexistent/docker.sock' });
    expect(r.exitCode).toBe(4);
    oneLine(r.stderr, /cannot reach the Docker daemon/);
    await nothingLeft();
  });

  it('unsupported distribution under --init distro → exit 6 naming the supported ones and the other ways', async () => {
    const r = await run(['img2vm-e2e-toyos:latest', '-o', join(work, 'd.qcow2'), '--init', 'distro']);
    expect(r.exitCode).toBe(6);
    oneLine(
      r.stderr,
      /Toy OS 1.0.*not supported.*img2vm installs a kernel and init into: Debian 11, 12, 13.*Alpine.*Rocky/,
    );
    expect(r.stderr).toMatch(/hint: --init img2vm boots any image.*--init image \(--raw\)/);
    await nothingLeft();
  });

  it('output directory missing or not writable → exit 7 before any work', async () => {
    const r = await run([BASE, '-o', join(work, 'nope', 'd.qcow2')]);
    expect(r.exitCode).toBe(7);
    oneLine(r.stderr, /does not exist/);
    // root ignores permission bits, so the unwritable case here is a parent that is a file
    await writeFile(join(work, 'file'), '');
    const r2 = await run([BASE, '-o', join(work, 'file', 'd.qcow2')]);
    expect(r2.exitCode).toBe(7);
    await rm(join(work, 'file'));
    await nothingLeft();
  });

  it('explicit size too small → exit 8 stating the size needed', async () => {
    const r = await run([BASE, '-o', join(work, 'd.qcow2'), '--size', '200M']);
    expect(r.exitCode).toBe(8);
    oneLine(r.stderr, /--size 200M is too small: the image needs at least \d/);
    await nothingLeft();
  });

  it('unknown output extension, bad size, bad hostname → exit 2', async () => {
    for (const args of [
      [BASE, '-o', join(work, 'd.xyz')],
      [BASE, '-o', join(work, 'd.qcow2'), '--size', 'big'],
      [BASE, '-o', join(work, 'd.qcow2'), '--hostname', 'no_underscores'],
      [BASE],
    ]) {
      const r = await run(args);
      expect(r.exitCode, r.stderr).toBe(2);
    }
    await nothingLeft();
  });

  it('--json reports errors as an object too', async () => {
    const r = await run(['no-such-image:nope', '-o', join(work, 'd.qcow2'), '--json']);
    expect(r.exitCode).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { kind: 'imageNotFound', exitCode: 3 } });
  });

  it('Ctrl-C in the middle leaves no output, temp files, child processes or containers', async () => {
    const out = join(work, 'd.qcow2');
    // The containers of an image of this file's own (ancestor=), so conversions that other test files run at the same
    // time on this daemon do not count.
    await dockerBuild(OWN, `FROM ${BASE}\nLABEL org.img2vm.test=errors-ctrl-c\n`);
    const containers = async () => (await dockerContainersFrom(OWN)).sort();
    const before = await containers();
    // Paused by the pipeline's test hook while a layer is being flattened, then interrupted there (no sleeping).
    const r = await interruptAt('during:rootfs/flatten', [OWN, '-o', out, '--raw'], { TMPDIR: tmp });
    expect(r.exitCode, r.stderr).toBe(130);
    expect(lastError(r.stderr).message).toBe('interrupted by SIGINT');
    await nothingLeft();
    expect(await processesNaming([tmp, work])).toEqual([]);
    const made = (await containers()).filter((c) => !before.includes(c));
    expect(made).toEqual([]);
  });
});
