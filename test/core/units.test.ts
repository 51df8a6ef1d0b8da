import { describe, expect, it } from 'vitest';
import { formatSize, parseSize, GiB, MiB } from '../../src/core/units.js';
import { hostnameFromImage, ConvertOptionsSchema } from '../../src/core/options.js';
import { createRandom } from '../../src/core/random.js';

describe('parseSize', () => {
  it.each([
    ['4G', 4 * GiB],
    ['512M', 512 * MiB],
    ['1.5G', 1.5 * GiB],
    ['100MiB', 100 * MiB],
    ['2gb', 2 * GiB],
    ['4096', 4096],
    ['1T', 1024 * GiB],
  ])('%s', (t, n) => expect(parseSize(t)).toBe(n));
  it.each(['', 'abc', '-1G', '0', '4X', '1..2G'])('rejects %j with a usage error', (t) => {
    expect(() => parseSize(t)).toThrow(/invalid size/);
  });
  it('formats', () => {
    expect(formatSize(4 * GiB)).toBe('4G');
    expect(formatSize(1536 * MiB)).toBe('1.50G');
    expect(formatSize(300 * MiB)).toBe('300M');
  });
});

describe('hostnameFromImage', () => {
  it.each([
    ['debian:bookworm', 'debian'],
    ['ghcr.io/acme/web_app:1.2', 'web-app'],
    ['localhost:5000/demo', 'demo'],
    ['docker-daemon:img2vm-demo:bookworm', 'img2vm-demo'],
    ['x@sha256:abc', 'x'],
    ['___', 'img2vm'],
  ])('%s → %s', (ref, h) => expect(hostnameFromImage(ref)).toBe(h));
});

describe('options', () => {
  it('rejects a bad hostname', () => {
    const r = ConvertOptionsSchema.safeParse({ image: 'a', output: 'b.qcow2', hostname: 'bad_name!' });
    expect(r.success).toBe(false);
  });
  it('defaults', () => {
    const r = ConvertOptionsSchema.parse({ image: 'a', output: 'b.qcow2' });
    expect(r).toMatchObject({ boot: 'hybrid', builder: 'auto', raw: false });
  });
});

describe('createRandom', () => {
  it('is reproducible with a seed and random without', () => {
    expect(createRandom('s').uuid()).toBe(createRandom('s').uuid());
    expect(createRandom('s').uuid()).not.toBe(createRandom('t').uuid());
    expect(createRandom().uuid()).not.toBe(createRandom().uuid());
    expect(createRandom('s').uuid()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
