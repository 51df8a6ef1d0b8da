// What reaches grub.cfg and the BLS entry from outside img2vm (--kernel-cmdline, the image's PRETTY_NAME, ID and
// kernel name): one entry, one line per field, and the kernel gets exactly the arguments the user gave. Tools tier
// in part: grub-script-check (grub-common) parses the grub.cfg written, with GRUB's own lexer and grammar.
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderGrubCfg } from '../../src/boot/grub-config.js';
import { renderBlsEntry } from '../../src/boot/systemd-boot.js';
import { Img2vmError } from '../../src/core/errors.js';
import { parseConvertOptions, type ConvertOptionsInput } from '../../src/core/options.js';
import type { ConversionPlan } from '../../src/core/plan.js';
import { known, type FlatFacts } from '../helpers/facts.js';
import { createRandom } from '../../src/core/random.js';
import { plan } from '../../src/plan.js';

const tmp = mkdtempSync(join(tmpdir(), 'img2vm-boot-entries-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const FACTS: FlatFacts = {
  source: { transport: 'docker-daemon', id: `sha256:${'ab'.repeat(32)}`, layers: 1 },
  os: { id: 'debian', idLike: [], versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' },
  guest: {
    distribution: 'Debian GNU/Linux 12 (bookworm)',
    template: 'debian',
    builder: 'docker',
    cached: true,
    image: 'img2vm-cache:0123',
  },
  content: { blocks4k: 70_000, entries: 9_000, bytes: 270 << 20, files: 7_000 },
  kernel: { version: '6.1.0-28-cloud-amd64', kernelPath: '/vmlinuz', initrdPath: '/initrd.img' },
};

function planFor(opts: Partial<ConvertOptionsInput>, facts: FlatFacts = FACTS): ConversionPlan {
  const o = parseConvertOptions({ image: 'img2vm-demo:bookworm', output: '/out/disk.qcow2', seed: 's', ...opts });
  return plan(o, known(facts), createRandom('s'));
}
const grubCfg = (p: ConversionPlan) => p.guestFiles.find((f) => f.path === '/boot/grub/grub.cfg')!.content!;
const blsEntry = (p: ConversionPlan) =>
  p.guestFiles.find((f) => f.fs === 'esp' && f.path.startsWith('/loader/entries/') && f.content)!.content!;

function refusal(f: () => unknown): Img2vmError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(Img2vmError);
    return e as Img2vmError;
  }
  throw new Error('expected a refusal');
}

/** grub-script-check (grub-common) parses a file with GRUB's own lexer and grammar. */
async function grubScriptCheck(cfg: string): Promise<{ exitCode: number; all: string }> {
  const file = join(tmp, `grub-${Math.random().toString(36).slice(2)}.cfg`);
  writeFileSync(file, cfg);
  const r = await execa('grub-script-check', [file], { reject: false, all: true });
  return { exitCode: r.exitCode ?? -1, all: r.all ?? '' };
}

/** The lines of a grub.cfg that start a command at the top level or in the entry (comments left out). */
const commands = (cfg: string) =>
  cfg
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))
    .map((l) => l.trim().split(/\s/)[0]);

const HOSTILE_TITLE = 'x\' { menuentry "y" {\n  linux /evil\n} # \x1b]0;t\x07';

describe('--kernel-cmdline', () => {
  it('refuses control characters, naming the character and where it is (a newline would start a grub.cfg line of its own)', () => {
    const cases: [string, RegExp][] = [
      ['quiet\nmenuentry "X" {', /a newline \(U\+000A\) at character 6/],
      ['a\tb', /a tab \(U\+0009\) at character 2/],
      ['a\rb', /a carriage return \(U\+000D\) at character 2/],
      ['x=\x1b[31m', /an escape \(U\+001B\) at character 3/],
      ['é\x7f', /a delete \(U\+007F\) at character 2/],
      ['a\u0085', /U\+0085 at character 2/],
    ];
    for (const [cmdline, why] of cases) {
      for (const bootloader of ['grub', 'systemd-boot'] as const) {
        const e = refusal(() => planFor({ kernelCmdline: cmdline, bootloader, boot: 'uefi' }));
        expect(e.kind).toBe('usage');
        expect(e.message).toMatch(/^--kernel-cmdline has a control character/);
        expect(e.message).toMatch(why);
      }
    }
  });

  it('refuses with GRUB what GRUB would change on its way to the kernel: \' and \\ anywhere, " other than around a whole argument with a space', () => {
    const cases: [string, RegExp, RegExp][] = [
      ["a='b'", /' at character 3/, /backslash/],
      ['a=b\\c', /\\ at character 4/, /backslash/],
      ['foo="a b"', /" at character 5/, /"foo=a b"/],
      ['"ab"', /" at character 1/, /without a space/],
      ['x "a b', /" at character 3/, /not closed/],
      ['"a"b c"', /" at character 1/, /around a whole argument/],
    ];
    for (const [cmdline, message, hint] of cases) {
      const e = refusal(() => planFor({ kernelCmdline: cmdline }));
      expect(e.kind, cmdline).toBe('usage');
      expect(e.message, cmdline).toMatch(message);
      expect(e.message, cmdline).toMatch(/GRUB/);
      expect(`${e.message} ${e.hint}`, cmdline).toMatch(hint);
    }
    // systemd-boot hands the options line to the kernel as it is: only control characters are refused there
    expect(
      planFor({ kernelCmdline: 'a=\'b\' c=d\\e foo="a b"', bootloader: 'systemd-boot', boot: 'uefi' }).boot.userCmdline,
    ).toBe('a=\'b\' c=d\\e foo="a b"');
  });

  it('is at most 1024 bytes, so GRUB never drops arguments that do not fit the 2048 bytes x86 kernels take', () => {
    expect(planFor({ kernelCmdline: `a=${'x'.repeat(1022)}` }).boot.userCmdline).toHaveLength(1024);
    const e = refusal(() => planFor({ kernelCmdline: `a=${'x'.repeat(1023)}` }));
    expect(e).toMatchObject({ kind: 'usage', message: expect.stringMatching(/--kernel-cmdline is 1025 bytes/) });
  });

  it('takes the arguments between runs of spaces as the kernel does; a quoted argument keeps its spaces', () => {
    expect(planFor({ kernelCmdline: '  a   b  "c  d"  ' }).boot.userCmdline).toBe('a b "c  d"');
    expect(planFor({ kernelCmdline: '   ' }).boot.userCmdline).toBeNull();
  });

  it('reaches grub.cfg as GRUB words whose arguments GRUB turns back into exactly the given ones (golden)', async () => {
    const p = planFor({ kernelCmdline: 'quiet t1=a$b t2=c;d t3={e} #t4 t5=ok*? t6=x|y&z<w>v "t7=g  h" if t8=[[' });
    const cfg = grubCfg(p);
    expect(cfg.split('\n').find((l) => l.trimStart().startsWith('linux '))).toBe(
      `  linux /vmlinuz root=UUID=${p.rootUuid} ro console=tty0 console=ttyS0,115200n8 quiet 't1=a$b' 't2=c;d' 't3={e}' '#t4' 't5=ok*?' 't6=x|y&z<w>v' 't7=g  h' 'if' 't8=[['`,
    );
    expect(commands(cfg)).toEqual([
      'serial',
      'terminal_input',
      'terminal_output',
      'set',
      'set',
      'menuentry',
      'insmod',
      'linux',
      'initrd',
      '}',
    ]);
    expect(await grubScriptCheck(cfg)).toMatchObject({ exitCode: 0 });
    // the BLS options line carries the same arguments, byte for byte
    const sd = planFor({ kernelCmdline: 'quiet t1=a$b "t7=g  h"', bootloader: 'systemd-boot', boot: 'uefi' });
    expect(blsEntry(sd)).toContain(
      `\noptions    root=UUID=${sd.rootUuid} ro console=tty0 console=ttyS0,115200n8 quiet t1=a$b "t7=g  h"\n`,
    );
  });
});

describe('names from the image in boot entries', () => {
  const hostileOs = {
    ...FACTS,
    guest: undefined,
    os: { id: 'debian', idLike: [], versionId: '12', prettyName: HOSTILE_TITLE },
  };

  it('grub.cfg: PRETTY_NAME is one single-quoted word on the menuentry line, control characters made spaces', async () => {
    const p = planFor(
      { init: 'img2vm' },
      { ...hostileOs, kernelBundle: { version: '6.1.0-28-cloud-amd64', vmlinuz: '/k', origin: 'o', id: 'i' } },
    );
    const cfg = grubCfg(p);
    expect(cfg).toContain(`menuentry 'x'\\'' { menuentry "y" { linux /evil } # ]0;t' {\n`);
    expect(commands(cfg).filter((c) => c === 'menuentry' || c === 'linux')).toEqual(['menuentry', 'linux']);
    expect(await grubScriptCheck(cfg)).toMatchObject({ exitCode: 0 });
  });

  it('grub.cfg: the kernel and initrd paths are quoted when they hold anything GRUB reads specially', async () => {
    const cfg = renderGrubCfg({
      title: 'T',
      kernel: '/boot/vmlinuz-6.1 ; }',
      initrd: "/boot/initrd.img-$x'y",
      cmdline: 'root=UUID=u ro',
    });
    expect(cfg).toContain("  linux '/boot/vmlinuz-6.1 ; }' root=UUID=u ro\n");
    expect(cfg).toContain("  initrd '/boot/initrd.img-$x'\\''y'\n");
    expect(await grubScriptCheck(cfg)).toMatchObject({ exitCode: 0 });
  });

  it('BLS: every field on its one line; the title without control characters, a sort key only when it is an os-release ID', () => {
    const e = renderBlsEntry({
      title: 'Evil\noptions init=/bin/sh\r\n',
      kernelVersion: '6.1.0-28-cloud-amd64',
      cmdline: 'root=UUID=u ro',
      hasInitrd: true,
      sortKey: 'debian\nlinux /x',
    });
    expect(e.split('\n').map((l) => l.split(/\s/)[0])).toEqual(['title', 'version', 'options', 'linux', 'initrd', '']);
    expect(e).toMatch(/^title {6}Evil options init=\/bin\/sh\n/);
    expect(
      renderBlsEntry({ title: 'T', kernelVersion: '6.9', cmdline: 'x', hasInitrd: false, sortKey: 'toy-os_1.0' }),
    ).toMatch(/^sort-key {3}toy-os_1\.0$/m);
    // through the plan, with the hostile PRETTY_NAME
    const sd = planFor({ bootloader: 'systemd-boot', boot: 'uefi', init: 'image' }, { ...hostileOs });
    expect(
      blsEntry(sd)
        .split('\n')
        .filter((l) => l.startsWith('linux') || l.startsWith('options')),
    ).toHaveLength(2);
  });

  it('refuses a kernel whose version cannot name a boot entry and ESP files safely', () => {
    for (const version of ['6.1\n', '6.1 ; }', '../../x', '6.1:x', '.hidden', 'x'.repeat(65)]) {
      const e = refusal(() =>
        planFor({ raw: true }, { ...FACTS, kernel: { version, kernelPath: `/boot/vmlinuz-${version}` } }),
      );
      expect(e.kind, JSON.stringify(version)).toBe('badImage');
      expect(e.message).toMatch(/kernel version/);
      expect(e.message).not.toMatch(/[\n\x1b]/);
    }
    for (const version of [
      '6.1.0-28-cloud-amd64',
      '6.5.6-300.fc39.x86_64',
      '6.1.21-v8+',
      '6.6.1-arch1-1',
      'lts',
      '5.10.0~rc1',
    ]) {
      expect(() =>
        planFor({ raw: true }, { ...FACTS, kernel: { version, kernelPath: `/boot/vmlinuz-${version}` } }),
      ).not.toThrow();
    }
  });

  it('grub-script-check can fail: it rejects a grub.cfg whose entry is not closed', async () => {
    expect((await grubScriptCheck("menuentry 'x' {\n  linux /vmlinuz\n")).exitCode).not.toBe(0);
  });
});
