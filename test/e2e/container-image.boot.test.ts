// img2vm's container image where CI runs it: built by scripts/build-image.sh, it converts an OCI archive and
// boot-tests the disk as user 1000 with every capability dropped, no new privileges, a read-only root, /tmp a tmpfs,
// no network and no devices, the kernel given as files in the mounted work directory.
import { execa } from 'execa';
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxArchive, kernelFiles } from './ci-fixtures.js';
import { REPO, sh } from './helpers.js';

const IMAGE = 'img2vm:latest';
/** Everything a restricted CI pod takes away, as docker spells it. */
export const LOCKED_DOWN = [
  '--user',
  '1000:1000',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
  '--read-only',
  '--tmpfs',
  '/tmp',
  '--network',
  'none',
];

let tmp: string;
let work: string;
const timings: string[] = [];

beforeAll(async () => {
  await sh('bash', [join(REPO, 'scripts', 'start-docker.sh')]);
  const t0 = performance.now();
  await sh('bash', [join(REPO, 'scripts', 'build-image.sh')]);
  timings.push(`build-image.sh: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-container-'));
  work = join(tmp, 'work');
  await busyboxArchive(join(tmp, 'image.tar'), 'hello from a locked-down container');
  await execa('mkdir', ['-p', work]);
  await execa('mv', [join(tmp, 'image.tar'), work]);
  await kernelFiles(join(work, 'kernel'));
  // The job's user owns its work directory, as a CI checkout or an emptyDir does.
  await execa('chown', ['-R', '1000:1000', work]);
  await chown(work, 1000, 1000);
}, 20 * 60_000);

afterAll(async () => {
  if (timings.length) console.log(`container image:\n${timings.join('\n')}`);
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** `docker run` of the image with everything taken away, the work directory mounted at /work. */
async function locked(runArgs: string[], args: string[]) {
  const t0 = performance.now();
  const r = await execa('docker', ['run', '--rm', ...LOCKED_DOWN, '-v', `${work}:/work`, ...runArgs, IMAGE, ...args], {
    reject: false,
    all: true,
  });
  timings.push(`${args.join(' ')}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

describe('the img2vm container image', () => {
  it('runs as a non-root user with img2vm as its entrypoint', async () => {
    const ins = await execa('docker', [
      'image',
      'inspect',
      '-f',
      '{{.Config.User}} {{json .Config.Entrypoint}}',
      IMAGE,
    ]);
    expect(ins.stdout).toBe('1000:1000 ["img2vm"]');
  });

  it("converts and boot-tests a disk with every privilege dropped and a read-only root, by the action's script", async () => {
    // The GitHub action's convert step (scripts/ci-job.sh) run in the container, with the action's inputs.
    const job = await locked(
      [
        '-v',
        `${join(REPO, 'scripts', 'ci-job.sh')}:/ci-job.sh:ro`,
        '-e',
        'IMG2VM_IMAGE=oci-archive:/work/image.tar',
        '-e',
        'IMG2VM_OUTPUT=/work/disk.qcow2',
        '-e',
        'IMG2VM_FORMAT=qcow2',
        '-e',
        'IMG2VM_TEST=true',
        '-e',
        'IMG2VM_ARGS=--kernel /work/kernel/vmlinuz --kernel-modules /work/kernel/modules --seed ci',
        '-e',
        'GITHUB_OUTPUT=/work/github-output',
        '--entrypoint',
        '/bin/sh',
      ],
      ['/ci-job.sh'],
    );
    expect(job.exitCode, job.all).toBe(0);
    expect(job.stdout).toMatch(/img2vm oci-archive:\/work\/image.tar -o \/work\/disk.qcow2 --format qcow2/);
    expect(await readFile(join(work, 'github-output'), 'utf8')).toBe('disk=/work/disk.qcow2\n');
    // Nothing but the disk (and the step's output file) was left in the work directory.
    expect((await readdir(work)).sort()).toEqual(['disk.qcow2', 'github-output', 'image.tar', 'kernel']);
  });
});
