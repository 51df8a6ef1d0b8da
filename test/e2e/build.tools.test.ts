// img2vm build end to end with each builder: one command from a Dockerfile to a disk holding what the build made,
// the builder's cache reused, a failing step reported with the builder's message and nothing left behind.
import { execa } from 'execa';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BASE_TAG, buildFixture, type BuildFixture } from './build-fixture.js';
import { img2vm } from './helpers.js';

let tmp: string;
let fx: BuildFixture;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'img2vm-e2e-build-'));
  fx = await buildFixture(tmp);
}, 300_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Containers the builder knows (running or not), to see that a build left none. */
async function containers(builder: 'docker' | 'buildah'): Promise<Set<string>> {
  const r =
    builder === 'docker'
      ? // Only containers of this test's base image and what is built on it: other files use the daemon meanwhile.
        await execa('docker', ['ps', '--all', '--quiet', '--no-trunc', '--filter', `ancestor=${BASE_TAG}`])
      : await execa('buildah', ['containers', '--all', '--quiet', '--notruncate']);
  return new Set(r.stdout.split('\n').filter(Boolean));
}

async function imageExists(builder: 'docker' | 'buildah', id: string): Promise<boolean> {
  const r = await execa(builder, builder === 'docker' ? ['image', 'inspect', id] : ['inspect', id], { reject: false });
  return r.exitCode === 0;
}

async function build(builder: 'docker' | 'buildah', work: string, out: string, more: string[] = []) {
  return img2vm(
    [
      'build',
      fx.context,
      '--builder',
      builder,
      '--build-arg',
      `BASE=${fx.base[builder]}`,
      '--build-arg',
      'GREETING=hello from a build arg',
      '-o',
      out,
      '--init',
      'img2vm',
      '--json',
      ...more,
    ],
    { env: { TMPDIR: work } },
  );
}

describe.each(['docker', 'buildah'] as const)('img2vm build --builder %s', (builder) => {
  it('turns the Dockerfile into a disk with the built files, leaves no image, and reuses the cache', async () => {
    const work = await mkdtemp(join(tmp, `${builder}-work-`));
    const out = join(tmp, `${builder}.img`);
    const r = await build(builder, work, out);
    expect(r.exitCode, r.all).toBe(0);
    // the builder's own output, as it ran
    expect(r.stderr).toMatch(builder === 'docker' ? /Step 5\/7 : COPY hello.txt/ : /STEP 4\/6: COPY hello.txt/);
    const j = JSON.parse(r.stdout) as {
      build: { builder: string; id: string; tag: string | null };
      partitions: { role: string; start: number }[];
      plan: { guest: { strategy: string }; hostname?: string };
    };
    expect(j.build).toMatchObject({ builder, tag: null });
    expect(j.plan.guest.strategy).toBe('img2vm');
    const root = j.partitions.find((p) => p.role === 'root')!;
    const cat = async (path: string) =>
      (await execa('debugfs', ['-R', `cat ${path}`, `${out}?offset=${root.start}`])).stdout;
    expect(await cat('/greeting')).toBe('greeting=hello from a build arg');
    expect(await cat('/hello.txt')).toBe('hello from the context');
    // no image left under the id (and no tag: none was asked for), no temp dir
    expect(await imageExists(builder, j.build.id)).toBe(false);
    expect(await readdir(work)).toEqual([]);

    const again = await build(builder, work, join(tmp, `${builder}-again.img`));
    expect(again.exitCode, again.all).toBe(0);
    // the COPY and the RUN come from the builder's cache
    expect(again.stderr.match(/Using cache/g)?.length ?? 0, again.stderr).toBeGreaterThanOrEqual(2);
    expect(await readdir(work)).toEqual([]);
  }, 600_000);

  it('-t keeps the built image under that name', async () => {
    const work = await mkdtemp(join(tmp, `${builder}-tag-`));
    const tag = `img2vm-e2e-build-kept:${builder}`;
    const r = await build(builder, work, join(tmp, `${builder}-tag.img`), ['-t', tag]);
    expect(r.exitCode, r.all).toBe(0);
    expect((JSON.parse(r.stdout) as { build: { tag: string } }).build.tag).toBe(tag);
    try {
      expect(await imageExists(builder, tag)).toBe(true);
    } finally {
      await execa(builder, ['rmi', tag], { reject: false });
    }
    expect(await readdir(work)).toEqual([]);
  }, 600_000);

  it("a failing step is exit 12 with the builder's message, no disk, no container, no temp dir", async () => {
    const work = await mkdtemp(join(tmp, `${builder}-fail-`));
    const out = join(tmp, `${builder}-fail.img`);
    const before = await containers(builder);
    const r = await build(builder, work, out, ['--build-arg', 'FAIL=1']);
    expect(r.exitCode, r.all).toBe(12);
    expect(r.stderr).toContain('step failed on purpose');
    expect(r.stderr).toMatch(/img2vm: error: (docker build|buildah bud) failed \(exit \d+\)/);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { kind: 'imageBuildFailed', exitCode: 12 } });
    expect(existsSync(out)).toBe(false);
    expect(await readdir(work)).toEqual([]);
    const after = await containers(builder);
    expect([...after].filter((c) => !before.has(c))).toEqual([]);
  }, 600_000);
});

describe('img2vm plan --build', () => {
  it('builds and plans the result without writing a disk, with the same options as img2vm build', async () => {
    const work = await mkdtemp(join(tmp, 'plan-'));
    const r = await img2vm(
      [
        'plan',
        '--build',
        fx.context,
        '--builder',
        'docker',
        '--build-arg',
        `BASE=${fx.base.docker}`,
        '-o',
        join(tmp, 'planned.img'),
        '--init',
        'img2vm',
        '--json',
      ],
      { env: { TMPDIR: work } },
    );
    expect(r.exitCode, r.all).toBe(0);
    const p = JSON.parse(r.stdout) as { guest: { strategy: string }; source: unknown };
    expect(p.guest.strategy).toBe('img2vm');
    expect(existsSync(join(tmp, 'planned.img'))).toBe(false);
    expect(await readdir(work)).toEqual([]);
  }, 600_000);

  it('refuses a builder that cannot build a Dockerfile, before building', async () => {
    const r = await img2vm(['build', fx.context, '--builder', 'runc', '-o', join(tmp, 'x.img')]);
    expect(r.exitCode, r.all).toBe(2);
    expect(r.stderr).toContain('--builder runc cannot build a Dockerfile');
  });
});
