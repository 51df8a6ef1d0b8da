// Host programs as stream filters: the exact argv, failures quoted, the input's own error first, and stop() waited for.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Img2vmError } from '../../src/core/errors.js';
import { decompressArgv, FilterError, filterThrough } from '../../src/tools/filter.js';

describe('filterThrough', () => {
  it('runs each decompressor stdin to stdout with exactly this argv', () => {
    expect(decompressArgv('zstd')).toEqual(['--decompress', '--stdout', '--quiet']);
    expect(decompressArgv('xz')).toEqual(['--decompress', '--stdout']);
    expect(decompressArgv('bzip2')).toEqual(['--decompress', '--stdout']);
  });

  it('a failing program is a FilterError with its exit status and what it said', async () => {
    const f = filterThrough('zstd', decompressArgv('zstd'), Readable.from([Buffer.from('not zstd at all')]));
    const e = await (async () => {
      for await (const _ of f.chunks) void _;
    })().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FilterError);
    expect((e as FilterError).message).toMatch(
      /^zstd failed \(exit 1\): .*(unknown header|not in zstd format|unsupported format)/,
    );
  });

  it("the input's own error wins over the program's complaint about a cut stream", async () => {
    const broken = new Error('source went away');
    async function* input(): AsyncGenerator<Buffer> {
      yield Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04]);
      throw broken;
    }
    const f = filterThrough('zstd', decompressArgv('zstd'), input());
    const e = await (async () => {
      for await (const _ of f.chunks) void _;
    })().catch((x: unknown) => x);
    expect(e).toBe(broken);
  });

  it('stop() rejects a pending read with its reason once the program has exited', async () => {
    // An input that never ends: the program waits on its stdin, the read waits on its stdout.
    const f = filterThrough('zstd', decompressArgv('zstd'), new Readable({ read() {} }));
    const pending = f.chunks.next();
    let exited = false;
    void f.exited.then(() => (exited = true));
    const reason = new Error('aborted');
    f.stop(reason);
    await expect(pending).rejects.toBe(reason);
    expect(exited).toBe(true);
  });

  it('output read only after the program has exited is all there (a layer decompressed ahead of its turn)', async () => {
    const data = Buffer.alloc(3 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) >>> 5;
    const f = filterThrough('zstd', ['--compress', '--stdout', '--quiet', '-1'], Readable.from([data]));
    await f.exited;
    const parts: Buffer[] = [];
    for await (const c of f.chunks) parts.push(c);
    const back = filterThrough('zstd', decompressArgv('zstd'), Readable.from(parts));
    const out: Buffer[] = [];
    for await (const c of back.chunks) out.push(c);
    expect(Buffer.concat(out).equals(data)).toBe(true);
  });

  it('a missing program is toolMissing naming its Debian package', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const e = (() => {
        try {
          filterThrough('zstd', decompressArgv('zstd'), Readable.from([]));
        } catch (x) {
          return x;
        }
      })();
      expect(e).toBeInstanceOf(Img2vmError);
      expect(e).toMatchObject({ kind: 'toolMissing', exitCode: 5, hint: 'install it: apt-get install zstd' });
    } finally {
      process.env.PATH = path;
    }
  });
});
