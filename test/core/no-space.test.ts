// A full or read-only file system becomes one message saying where, how much is free and how much is needed.
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { asWriteError, freeBytes, isNoSpace, isReadOnly, mountPointOf, noSpaceError } from '../../src/core/no-space.js';

const errno = (code: string) => Object.assign(new Error(`${code}: oops`), { code });

describe('what counts as no space', () => {
  it('ENOSPC and EDQUOT, a tool quoting it on stderr, and a wrapped cause', () => {
    expect(isNoSpace(errno('ENOSPC'))).toBe(true);
    expect(isNoSpace(errno('EDQUOT'))).toBe(true);
    expect(
      isNoSpace(
        new Img2vmError(
          'toolFailed',
          'qemu-img failed (exit 1): error while writing at byte 0: No space left on device',
        ),
      ),
    ).toBe(true);
    expect(
      isNoSpace(new Img2vmError('badImage', 'image archive is corrupt: write failed', 'x', { cause: errno('ENOSPC') })),
    ).toBe(true);
    expect(isNoSpace(errno('EIO'))).toBe(false);
    expect(isNoSpace(new Error('No space left on device'))).toBe(false); // only errno codes or img2vm's quoting of a tool
    expect(isNoSpace(undefined)).toBe(false);
    expect(isReadOnly(errno('EROFS'))).toBe(true);
    expect(isReadOnly(errno('EACCES'))).toBe(false);
  });
});

describe('the message', () => {
  it('names the place, its mount point, what is free there and what is needed, with the way out for that place', () => {
    const e = noSpaceError({
      area: 'cache',
      what: 'blob sha256:abc',
      path: '/proc/self',
      needBytes: 3 * 1048576,
      needNote: 'the whole blob',
    });
    expect(e).toMatchObject({ kind: 'outputNotWritable', exitCode: 7 });
    expect(e.message).toMatch(
      /^no space left for blob sha256:abc in the cache \/proc\/self: the file system at \/proc has \d+(\.\d+)?[BKMG] free; it needs about 3M \(the whole blob\)$/,
    );
    expect(e.hint).toBe(
      'free space there (img2vm cache prune), or set XDG_CACHE_HOME to a directory on a larger file system; nothing partial was kept',
    );
    expect(noSpaceError({ area: 'output', what: 'the disk', path: '/' }).hint).toMatch(
      /^free space there, or write the output to another file system \(-o\)/,
    );
    expect(noSpaceError({ area: 'work', what: 'the disk', path: '/' }).hint).toMatch(/set TMPDIR/);
  });

  it("shows TMPDIR, not the run's own work directory inside it", () => {
    const e = noSpaceError({ area: 'work', what: 'the disk', path: '/tmp/img2vm-123.0a1b2c3d-XyZ123/disk.raw' });
    expect(e.message).toMatch(/^no space left for the disk in the work directory \(TMPDIR\) \/tmp: /);
  });

  it('asWriteError maps no-space and read-only failures and passes anything else through unchanged', () => {
    const site = { area: 'output' as const, what: 'the disk', path: '/' };
    const other = errno('EIO');
    expect(asWriteError(other, site)).toBe(other);
    expect((asWriteError(errno('ENOSPC'), site) as Img2vmError).message).toMatch(
      /^no space left for the disk in the output directory \/: /,
    );
    expect((asWriteError(errno('EROFS'), site) as Img2vmError).message).toMatch(
      /^cannot write the disk: the output directory \/ is on a read-only file system/,
    );
    const once = asWriteError(errno('ENOSPC'), site);
    expect(asWriteError(once, { ...site, what: 'something else' })).toBe(once);
  });

  it('finds mount points and free space, and says nothing rather than guess', () => {
    expect(mountPointOf('/proc/self/status')).toBe('/proc');
    expect(mountPointOf('/')).toBe('/');
    expect(freeBytes('/')).toBeGreaterThanOrEqual(0);
    expect(freeBytes('/nonexistent/a/b')).toBeUndefined();
  });
});
