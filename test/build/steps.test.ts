// How the runc builder carries out recipe steps: USER as docker resolves it, COPY inside the root only, the ENV the image keeps, the cache key.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildKey } from '../../src/build/key.js';
import { builtConfig, checkBundlePaths } from '../../src/build/runc.js';
import { Img2vmError } from '../../src/core/errors.js';
import { MemoryStore } from '../../src/rootfs/memory-store.js';
import { RootTree } from '../../src/rootfs/tree-edit.js';
import { applyEnv, copyStep, copyTargets, recipeEnv, resolveUser } from '../../src/build/steps.js';
import { parseRecipe, renderRecipe, type RecipeFile, type Step } from '../../src/build/recipe.js';
import { recipeFor } from '../../src/guest/distros.js';

const PASSWD =
  'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nu:x:1000:1000::/home/u:/bin/sh\nbroken line\n';
const GROUP = 'root:x:0:\nadm:x:4:u\nsudo:x:27:u,other\nu:x:1000:\nstaff:x:50:other\n';

describe('resolveUser', () => {
  it('names and numbers as docker resolves them, with supplementary groups', () => {
    expect(resolveUser(PASSWD, GROUP, 'root')).toEqual({ uid: 0, gid: 0, additionalGids: [], home: '/root' });
    expect(resolveUser(PASSWD, GROUP, 'u')).toEqual({ uid: 1000, gid: 1000, additionalGids: [4, 27], home: '/home/u' });
    expect(resolveUser(PASSWD, GROUP, '1000')).toEqual({
      uid: 1000,
      gid: 1000,
      additionalGids: [4, 27],
      home: '/home/u',
    });
    expect(resolveUser(PASSWD, GROUP, 'u:staff')).toEqual({ uid: 1000, gid: 50, additionalGids: [], home: '/home/u' });
    expect(resolveUser(PASSWD, GROUP, '4321:99')).toEqual({ uid: 4321, gid: 99, additionalGids: [], home: '/' });
    expect(resolveUser(undefined, undefined, '0')).toEqual({ uid: 0, gid: 0, additionalGids: [], home: '/' });
  });

  it('a user or group name the image does not have is an error', () => {
    expect(() => resolveUser(PASSWD, GROUP, 'nobody')).toThrow(/USER nobody does not exist/);
    expect(() => resolveUser(PASSWD, GROUP, 'u:wheel')).toThrow(/group wheel does not exist/);
  });
});

const FILES: RecipeFile[] = [
  { path: 'files/etc/systemd/system/a.service', mode: 0o644, content: Buffer.from('[Unit]\n') },
  { path: 'files/usr/local/sbin/tool', mode: 0o755, content: Buffer.from('#!/bin/sh\n') },
  { path: 'files/etc/hosts.extra', mode: 0o644, content: Buffer.from('x') },
];
const copy = (src: string, dest: string): Extract<Step, { kind: 'copy' }> => ({ kind: 'copy', src, dest, line: 1 });

describe('copyTargets', () => {
  it('a directory copies its content; a file goes to the destination or into it', () => {
    expect(copyTargets(copy('files/', '/'), FILES).map((t) => [t.dest, t.file.path])).toEqual([
      ['/etc/systemd/system/a.service', 'files/etc/systemd/system/a.service'],
      ['/usr/local/sbin/tool', 'files/usr/local/sbin/tool'],
      ['/etc/hosts.extra', 'files/etc/hosts.extra'],
    ]);
    expect(copyTargets(copy('files/etc', '/opt/etc'), FILES).map((t) => t.dest)).toEqual([
      '/opt/etc/systemd/system/a.service',
      '/opt/etc/hosts.extra',
    ]);
    expect(copyTargets(copy('files/etc/hosts.extra', '/etc/hosts.d/'), FILES).map((t) => t.dest)).toEqual([
      '/etc/hosts.d/hosts.extra',
    ]);
    expect(copyTargets(copy('files/etc/hosts.extra', '/etc/renamed'), FILES).map((t) => t.dest)).toEqual([
      '/etc/renamed',
    ]);
    expect(() => copyTargets(copy('files/nothing', '/'), FILES)).toThrow(/nothing in the template matches/);
  });
});

describe('copyStep', () => {
  let dir: string;
  let root: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'img2vm-copy-'));
    root = join(dir, 'root');
    mkdirSync(root);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("writes as root with the template's modes, following the image's symlinks only inside the root", () => {
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    // The image's /etc is an absolute symlink to a directory that exists on the host too.
    symlinkSync(outside, join(root, 'etc'));
    mkdirSync(join(root, 'usr'));
    symlinkSync('../../../../..', join(root, 'usr', 'local'));
    expect(copyStep(root, copy('files/', '/'), FILES)).toBe(3);
    expect(readdirSync(outside)).toEqual([]);
    const inRoot = join(root, outside.slice(1), 'systemd/system/a.service');
    expect(readFileSync(inRoot, 'utf8')).toBe('[Unit]\n');
    const st = lstatSync(inRoot);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o644]);
    // usr/local → the root itself (.. stops there), so the tool lands in /sbin of the root.
    expect(lstatSync(join(root, 'sbin', 'tool')).mode & 0o7777).toBe(0o755);
    expect(existsSync(join(dir, 'sbin'))).toBe(false);
  });

  it('replaces a symlink at the destination instead of writing through it', () => {
    mkdirSync(join(root, 'etc'));
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'keep');
    symlinkSync(victim, join(root, 'etc', 'hosts.extra'));
    copyStep(root, copy('files/etc/hosts.extra', '/etc/hosts.extra'), FILES);
    expect(readFileSync(victim, 'utf8')).toBe('keep');
    expect(lstatSync(join(root, 'etc', 'hosts.extra')).isFile()).toBe(true);
  });
});

describe('the ENV a built image keeps', () => {
  it('ENV values stay, ARG values do not (they are build-time only)', () => {
    const df =
      'FROM sha256:abc\nUSER root\nWORKDIR /\nARG DEBIAN_FRONTEND=noninteractive\nENV LANG=C.UTF-8 A="x y"\nRUN true\nENV B=2\n';
    expect(parseRecipe(df).steps[0]).toMatchObject({
      env: { DEBIAN_FRONTEND: 'noninteractive', LANG: 'C.UTF-8', A: 'x y' },
    });
    expect(recipeEnv(df)).toEqual({ LANG: 'C.UTF-8', A: 'x y', B: '2' });
    expect(recipeEnv('FROM x\nUSER root\nWORKDIR /\nARG A=1\nRUN true\n')).toEqual({});
  });

  it("is applied to the base config's Env in place, and the config names one layer", () => {
    expect(applyEnv(['PATH=/bin', 'LANG=C'], { LANG: 'C.UTF-8', NEW: '1' })).toEqual([
      'PATH=/bin',
      'LANG=C.UTF-8',
      'NEW=1',
    ]);
    const c = builtConfig(
      {
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/bin'], Cmd: ['/bin/bash'] },
        rootfs: { type: 'layers', diff_ids: ['sha256:1', 'sha256:2'] },
        history: [{}, {}],
      },
      { LANG: 'C.UTF-8' },
      'sha256:layer',
      { 'org.img2vm.template': 'debian' },
      '2024-01-01T00:00:00Z',
    );
    expect(c).toEqual({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: { Env: ['PATH=/bin', 'LANG=C.UTF-8'], Cmd: ['/bin/bash'], Labels: { 'org.img2vm.template': 'debian' } },
      rootfs: { type: 'layers', diff_ids: ['sha256:layer'] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'img2vm runc builder 3: template debian' }],
    });
  });
});

describe('buildKey', () => {
  const base = 'sha256:' + 'a'.repeat(64);
  it('changes with the builder, its version, the base, any rendered byte, a file mode or a file name; not with file order', async () => {
    const recipe = recipeFor({ id: 'debian', versionId: '12', idLike: [] }, 'amd64');
    const r = await renderRecipe(recipe, { base, ...recipe.values });
    const k = buildKey('runc', '1', base, r);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(buildKey('runc', '1', base, r)).toBe(k);
    expect(buildKey('runc', '1', base, { ...r, files: [...r.files].reverse() })).toBe(k);
    const variants = [
      buildKey('podman', '1', base, r),
      buildKey('runc', '2', base, r),
      buildKey('runc', '1', 'sha256:' + 'b'.repeat(64), r),
      buildKey('runc', '1', base, { ...r, dockerfile: `${r.dockerfile} ` }),
      buildKey('runc', '1', base, { ...r, files: r.files.map((f, i) => (i === 0 ? { ...f, mode: 0o600 } : f)) }),
      buildKey('runc', '1', base, { ...r, files: r.files.map((f, i) => (i === 0 ? { ...f, path: `${f.path}x` } : f)) }),
      buildKey('runc', '1', base, {
        ...r,
        files: r.files.map((f, i) => (i === 0 ? { ...f, content: Buffer.concat([f.content, Buffer.from('\n')]) } : f)),
      }),
    ];
    expect(new Set([k, ...variants]).size).toBe(variants.length + 1);
    // The values are in the key through the rendered Dockerfile.
    const other = await renderRecipe(recipe, { base, ...recipe.values, extra_packages: 'openssh-server' });
    expect(buildKey('runc', '1', base, other)).not.toBe(k);
  });
});

describe('the bundle root', () => {
  it('refuses an image whose deepest path, under the build directory, is more than Linux allows in a path', () => {
    const tree = new RootTree({ store: new MemoryStore(), epoch: { sec: 0, nsec: 0 } });
    const deep = Array.from({ length: 38 }, (_, i) => `d${String(i).padStart(2, '0')}${'x'.repeat(96)}`).join('/');
    tree.writeFile(`${deep}/f`, 'x', { mode: 0o644 });
    // "/" + 3800 bytes of directories + "/f"
    expect(() => checkBundlePaths(tree.root, '/tmp/short')).not.toThrow();
    const e = (() => {
      try {
        checkBundlePaths(tree.root, `/tmp/${'t'.repeat(300)}`);
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(Img2vmError);
    expect((e as Img2vmError).kind).toBe('badImage');
    expect((e as Img2vmError).message).toMatch(
      /is 3802 bytes; under the build directory \/tmp\/t+ it would be 4107, and Linux allows 4095/,
    );
    expect((e as Img2vmError).message).toMatch(/^the image's path "\/d00x+/);
  });
});
