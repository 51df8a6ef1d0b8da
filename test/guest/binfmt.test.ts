// binfmt_misc's files as planning reads them: which handler runs another architecture's programs, and why none does.
import { describe, expect, it } from 'vitest';
import { emulationFix, emulationFor, handlesArch, parseBinfmt, parseBinfmtEntry } from '../../src/guest/binfmt.js';

// As Debian's qemu-user-static registers them (/usr/lib/binfmt.d/qemu-*.conf), read back from /proc.
const AARCH64 = `enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
`;
const X86_64 = `enabled
interpreter /usr/libexec/qemu-binfmt/x86_64-binfmt-P
flags: POF
offset 0
magic 7f454c4602010100000000000000000002003e00
mask fffffffffffefe00fffffffffffffffffeffffff
`;
const ARM32 = `enabled
interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P
flags: POF
offset 0
magic 7f454c4601010100000000000000000002002800
mask ffffffffffffff00fffffffffffffffffeffffff
`;
const JAR = `enabled
interpreter /usr/bin/jexec
flags: 
extension .jar
`;

const facts = (entries: Record<string, string>, status = 'enabled\n') => parseBinfmt({ status, entries });

describe('parseBinfmt', () => {
  it("reads each handler's state, interpreter, flags, magic and mask", () => {
    expect(parseBinfmtEntry('qemu-aarch64', AARCH64)).toEqual({
      name: 'qemu-aarch64',
      enabled: true,
      interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P',
      flags: 'POF',
      offset: 0,
      magic: '7f454c460201010000000000000000000200b700',
      mask: 'ffffffffffffff00fffffffffffffffffeffffff',
    });
    expect(parseBinfmtEntry('jar', JAR)).toMatchObject({ enabled: true, flags: '', magic: null, mask: null });
    expect(parseBinfmtEntry('off', AARCH64.replace('enabled', 'disabled')).enabled).toBe(false);
  });

  it('no status file: binfmt_misc is not mounted', () => {
    expect(parseBinfmt({ entries: {} })).toEqual({ mounted: false, enabled: false, handlers: [] });
  });
});

describe('handlesArch: by the magic under its mask, not by the name', () => {
  it.each([
    ['aarch64', AARCH64, 'arm64', true],
    ['aarch64', AARCH64, 'amd64', false],
    ['x86_64', X86_64, 'amd64', true],
    ['x86_64', X86_64, 'arm64', false],
    ['arm (32-bit)', ARM32, 'arm64', false],
    ['jar (an extension handler)', JAR, 'arm64', false],
  ] as const)('%s handler, %s programs: %s', (_n, text, arch, want) => {
    expect(handlesArch(parseBinfmtEntry('h', text), arch)).toBe(want);
  });

  it('a handler registered under another name still counts', () => {
    expect(emulationFor(facts({ 'my-arm64': AARCH64 }), 'arm64')).toMatchObject({
      ok: true,
      handler: { name: 'my-arm64' },
    });
  });
});

describe('emulationFor: what a foreign distro build needs, or why it cannot run', () => {
  it.each([
    ['registered with F', facts({ 'qemu-aarch64': AARCH64, jar: JAR }), null],
    ['not mounted', parseBinfmt({ entries: {} }), 'binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc'],
    ['disabled', facts({ 'qemu-aarch64': AARCH64 }, 'disabled\n'), 'binfmt_misc is disabled'],
    [
      'nothing for aarch64',
      facts({ 'qemu-arm': ARM32, jar: JAR }),
      'no binfmt_misc handler runs arm64 programs (qemu-aarch64 is not registered)',
    ],
    [
      'its handler disabled',
      facts({ 'qemu-aarch64': AARCH64.replace('enabled', 'disabled') }),
      'the binfmt_misc handler qemu-aarch64 for arm64 programs is disabled',
    ],
    [
      'without the F flag',
      facts({ 'qemu-aarch64': AARCH64.replace('flags: POF', 'flags: P') }),
      'the binfmt_misc handler qemu-aarch64 (/usr/libexec/qemu-binfmt/aarch64-binfmt-P) is registered without the F (fix-binary) flag, so containers cannot find its interpreter',
    ],
    ['no facts at all', undefined, 'binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc'],
  ])('%s', (_n, f, why) => {
    const e = emulationFor(f, 'arm64');
    if (why === null) expect(e).toMatchObject({ ok: true, handler: { name: 'qemu-aarch64' } });
    else expect(e).toEqual({ ok: false, why: expect.stringContaining(why) });
  });

  it('amd64 programs on an arm64 host need qemu-x86_64', () => {
    expect(emulationFor(facts({ 'qemu-x86_64': X86_64 }), 'amd64')).toMatchObject({ ok: true });
    expect(emulationFor(facts({ 'qemu-aarch64': AARCH64 }), 'amd64')).toMatchObject({
      ok: false,
      why: expect.stringContaining('qemu-x86_64 is not registered'),
    });
  });

  it('the fix says what to run and that it needs root', () => {
    expect(emulationFix('arm64')).toBe(
      'as root (registering changes the running kernel): apt-get install qemu-user-static, then scripts/register-binfmt.sh or update-binfmts --enable qemu-aarch64',
    );
    expect(emulationFix('amd64')).toMatch(/as root .*update-binfmts --enable qemu-x86_64$/);
  });
});
