// The one resolver for host directories (the runc builder's bundle root after the image's own programs ran in it): nothing it reads or writes is outside the root.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { existsInRoot, mkdirInRoot, readInRoot, removeInRoot, writeInRoot } from '../../src/rootfs/inroot.js';
import { sandbox, snapshotOutside, type Sandbox } from './helpers.js';

let sb: Sandbox;
let before: string[];
beforeEach(() => {
  sb = sandbox();
  before = snapshotOutside(sb);
});
afterEach(() => {
  try {
    // Whatever the root holds, nothing around it changes.
    expect(snapshotOutside(sb)).toEqual(before);
  } finally {
    sb.cleanup();
  }
});

const p = (...parts: string[]): string => join(sb.root, ...parts);

function badImage(fn: () => unknown, re: RegExp): void {
  let e: unknown;
  try {
    fn();
  } catch (x) {
    e = x;
  }
  expect(e).toBeInstanceOf(Img2vmError);
  expect((e as Img2vmError).kind).toBe('badImage');
  expect((e as Img2vmError).message).toMatch(re);
}

describe('reading', () => {
  it('re-roots absolute and climbing symlinks, on the way and at the end', () => {
    mkdirSync(p('real'));
    writeFileSync(p('real', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    // An absolute link to a directory that exists on the host too, and one climbing far above the root.
    symlinkSync('/', p('etc'));
    symlinkSync('../../../../../../real', p('up'));
    symlinkSync('/real/passwd', p('real', 'link'));
    expect(readInRoot(sb.root, 'etc/passwd')).toBeUndefined();
    expect(readInRoot(sb.root, 'etc/real/passwd')?.toString()).toBe('root:x:0:0::/root:/bin/sh\n');
    expect(readInRoot(sb.root, 'up/passwd')?.toString()).toBe('root:x:0:0::/root:/bin/sh\n');
    expect(readInRoot(sb.root, '../../../real/link')?.toString()).toBe('root:x:0:0::/root:/bin/sh\n');
    expect(existsInRoot(sb.root, 'up/link')).toBe(true);
    expect(existsInRoot(sb.root, 'etc/secret')).toBe(false);
    // The sandbox has l1/l2/l3/etc/passwd right above the root: a `..` escape would read it.
    symlinkSync('../etc/passwd', p('escape'));
    expect(readInRoot(sb.root, 'escape')).toBeUndefined();
  });

  it('a FIFO, a device, a directory or a dangling link there reads as nothing, without waiting', () => {
    mkdirSync(p('etc'));
    execFileSync('mkfifo', [p('etc', 'passwd')]);
    execFileSync('mknod', [p('etc', 'group'), 'c', '1', '5']);
    mkdirSync(p('etc', 'shadow'));
    symlinkSync('/nowhere', p('etc', 'gshadow'));
    for (const f of ['passwd', 'group', 'shadow', 'gshadow', 'missing'])
      expect(readInRoot(sb.root, `etc/${f}`)).toBeUndefined();
  });

  it('a symlink loop is a badImage error; a huge file is refused before it is read', () => {
    symlinkSync('b', p('a'));
    symlinkSync('a', p('b'));
    badImage(() => readInRoot(sb.root, 'a/x'), /too many levels of symbolic links/);
    mkdirSync(p('etc'));
    execFileSync('truncate', ['-s', '17M', p('etc', 'passwd')]);
    badImage(() => readInRoot(sb.root, 'etc/passwd'), /more than 16777216 is not read/);
  });
});

describe('writing', () => {
  it('replaces a symlinked file, and a hard link, instead of writing through them', () => {
    mkdirSync(p('etc'));
    symlinkSync(join(sb.outside, 'secret'), p('etc', 'fstab'));
    writeFileSync(p('etc', 'other'), 'keep');
    linkSync(p('etc', 'other'), p('etc', 'hosts'));
    writeInRoot(sb.root, 'etc/fstab', 'new', 0o600);
    writeInRoot(sb.root, 'etc/hosts', 'mine');
    expect(lstatSync(p('etc', 'fstab')).isFile()).toBe(true);
    expect(readFileSync(p('etc', 'fstab'), 'utf8')).toBe('new');
    expect(lstatSync(p('etc', 'fstab')).mode & 0o7777).toBe(0o600);
    expect(readFileSync(p('etc', 'other'), 'utf8')).toBe('keep');
    expect(readFileSync(p('etc', 'hosts'), 'utf8')).toBe('mine');
  });

  it('writes through symlinked directories only inside the root, making what is missing 0755', () => {
    symlinkSync('/', p('etc'));
    symlinkSync('../../../..', p('usr'));
    writeInRoot(sb.root, 'etc/fstab', 'a');
    writeInRoot(sb.root, 'usr/local/sbin/tool', '#!/bin/sh\n', 0o4755);
    expect(readFileSync(p('fstab'), 'utf8')).toBe('a');
    const st = lstatSync(p('local', 'sbin', 'tool'));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o4755, 0, 0]);
    expect(lstatSync(p('local')).mode & 0o7777).toBe(0o755);
  });

  it('a file on the way, or a loop, is a badImage error naming the path', () => {
    writeFileSync(p('etc'), 'not a directory');
    badImage(
      () => writeInRoot(sb.root, 'etc/fstab', 'x'),
      /cannot reach \/etc\/fstab in the image: \/etc is not a directory/,
    );
    badImage(() => mkdirInRoot(sb.root, 'etc/app'), /\/etc is not a directory/);
    symlinkSync('self/x', p('self'));
    badImage(() => writeInRoot(sb.root, 'self/y', 'x'), /too many levels of symbolic links/);
  });
});

describe('directories and removal', () => {
  it('mkdir follows the symlinks it meets inside the root, the last one too, as mkdir -p does', () => {
    symlinkSync('/srv/app', p('app'));
    mkdirInRoot(sb.root, '/app/data');
    expect(lstatSync(p('srv', 'app', 'data')).isDirectory()).toBe(true);
    expect(lstatSync(p('app')).isSymbolicLink()).toBe(true);
    mkdirInRoot(sb.root, '/app/data');
    symlinkSync('../../../..', p('up'));
    mkdirInRoot(sb.root, 'up/l3');
    expect(existsSync(p('l3'))).toBe(true);
  });

  it('removing a symlink removes the link, never what it points to; a symlinked parent is re-rooted', () => {
    mkdirSync(p('data'));
    writeFileSync(p('data', 'f'), 'f');
    symlinkSync('/data', p('ln'));
    symlinkSync(sb.outside, p('out'));
    removeInRoot(sb.root, 'ln');
    removeInRoot(sb.root, 'out/secret');
    removeInRoot(sb.root, '../../../b');
    expect(readdirSync(sb.root).sort()).toEqual(['data', 'out']);
    expect(readFileSync(p('data', 'f'), 'utf8')).toBe('f');
  });
});
