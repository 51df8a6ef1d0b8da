// img2vm build's builders: their exact command lines, and the request checked before anything runs.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildahBudArgv, buildahPushArgv } from '../../src/build/dockerfile/buildah.js';
import { dockerBuildArgv, dockerRemoveArgv } from '../../src/build/dockerfile/docker.js';
import { builtName, DOCKERFILE_BUILDERS, dockerfileRequest } from '../../src/build/dockerfile/index.js';
import { ExitCode } from '../../src/core/errors.js';

const REQ = {
  context: '/src/app',
  file: '/src/app/Dockerfile.vm',
  buildArgs: ['A=1', 'B=two words'],
  target: 'final',
  platform: 'linux/amd64',
  tag: 'app:vm',
};

describe('Dockerfile builder command lines', () => {
  it('docker: host network, containers of failed steps removed, the id in a file, every option as given', () => {
    expect(dockerBuildArgv(REQ, '/w/iid')).toEqual([
      'build',
      '--network',
      'host',
      '--force-rm',
      '--iidfile',
      '/w/iid',
      '--file',
      '/src/app/Dockerfile.vm',
      '--build-arg',
      'A=1',
      '--build-arg',
      'B=two words',
      '--target',
      'final',
      '--platform',
      'linux/amd64',
      '--tag',
      'app:vm',
      '/src/app',
    ]);
    // only the image: the step images below it stay as the builder's cache
    expect(dockerRemoveArgv('sha256:ab')).toEqual(['image', 'rm', '--no-prune', 'sha256:ab']);
  });

  it('buildah: layers cached, host network, no tag unless asked, pushed uncompressed as an OCI layout', () => {
    expect(buildahBudArgv({ context: '/c', file: '/c/Dockerfile', buildArgs: [] }, '/w/iid')).toEqual([
      'bud',
      '--layers',
      '--force-rm',
      '--network',
      'host',
      '--iidfile',
      '/w/iid',
      '--file',
      '/c/Dockerfile',
      '/c',
    ]);
    expect(buildahPushArgv('abc', '/w/oci')).toEqual([
      'push',
      '--quiet',
      '--disable-compression',
      'abc',
      'oci:/w/oci:built',
    ]);
  });

  it('are registered under the ids --builder spells', () => {
    expect(Object.keys(DOCKERFILE_BUILDERS).sort()).toEqual(['buildah', 'docker']);
    for (const [id, b] of Object.entries(DOCKERFILE_BUILDERS)) expect(b.id).toBe(id);
    expect(ExitCode.imageBuildFailed).toBeGreaterThanOrEqual(10);
    expect(ExitCode.imageBuildFailed).toBeLessThan(20);
  });
});

describe('the build request', () => {
  const dir = mkdtempSync(join(tmpdir(), 'img2vm-dockerfile-'));
  mkdirSync(join(dir, 'ctx'));
  writeFileSync(join(dir, 'ctx', 'Dockerfile'), 'FROM scratch\n');
  writeFileSync(join(dir, 'other.Dockerfile'), 'FROM scratch\n');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults to CONTEXT/Dockerfile; -f is relative to where img2vm runs, as docker has it', async () => {
    const r = await dockerfileRequest({ context: join(dir, 'ctx') });
    expect(r).toEqual({ context: join(dir, 'ctx'), file: join(dir, 'ctx', 'Dockerfile'), buildArgs: [] });
    expect(builtName(r)).toBe('ctx');
    const f = await dockerfileRequest({ context: join(dir, 'ctx'), file: join(dir, 'other.Dockerfile'), tag: 'x:1' });
    expect(f.file).toBe(join(dir, 'other.Dockerfile'));
    expect(builtName(f)).toBe('x:1');
  });

  it('refuses a missing context, a missing Dockerfile and a build argument without =, as usage errors', async () => {
    await expect(dockerfileRequest({ context: join(dir, 'nope') })).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/not a directory/),
    });
    await expect(dockerfileRequest({ context: dir })).rejects.toMatchObject({
      kind: 'usage',
      message: expect.stringMatching(/no Dockerfile/),
    });
    await expect(dockerfileRequest({ context: join(dir, 'ctx'), buildArgs: ['A=1', 'B'] })).rejects.toMatchObject({
      kind: 'usage',
      message: '--build-arg B: not NAME=VALUE',
    });
  });
});
