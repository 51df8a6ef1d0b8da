// One command from a Dockerfile to a disk that boots: img2vm build with docker and --init img2vm, the built CMD run
// as the workload with the build's files and its exit code.
import { execa } from 'execa';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildFixture, type BuildFixture } from './build-fixture.js';
import { img2vm } from './helpers.js';

let tmp: string;
let fx: BuildFixture;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-build-boot-'));
  fx = await buildFixture(tmp);
}, 300_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

it('img2vm build --init img2vm: the disk runs the Dockerfile CMD over the built files', async () => {
  const out = join(tmp, 'built.qcow2');
  const b = await img2vm([
    'build',
    fx.context,
    '--builder',
    'docker',
    '--build-arg',
    `BASE=${fx.base.docker}`,
    '--build-arg',
    'GREETING=booted',
    '--init',
    'img2vm',
    '-o',
    out,
  ]);
  expect(b.exitCode, b.all).toBe(0);
  const run = await execa('bin/img2vm', ['run', out, '--timeout', '300'], {
    reject: false,
    all: true,
    stdin: 'ignore',
  });
  expect(run.exitCode, run.all).toBe(5);
  expect(run.stdout).toContain('hello from the context\ngreeting=booted');
}, 900_000);
