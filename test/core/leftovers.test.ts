// What a run leaves while it works is named for its owner (pid and host), and only a dead owner's leftovers are swept.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  deadOwner,
  hostTag,
  ownerTag,
  pidAlive,
  sweepTempOutputs,
  sweepWorkDirs,
  tempBeside,
  workDirPrefix,
} from '../../src/core/leftovers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'img2vm-leftovers-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A pid no process has: the highest free one below the kernel's pid_max (as good as one whose process exited). */
function deadPid(): number {
  const max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  for (let pid = max - 1; pid > 1; pid--) if (!pidAlive(pid)) return pid;
  throw new Error('every pid is taken');
}

describe('leftover names', () => {
  it('carry the pid and an 8-hex tag of the host name', () => {
    expect(hostTag()).toMatch(/^[0-9a-f]{8}$/);
    expect(ownerTag()).toBe(`${process.pid}.${hostTag()}`);
    expect(workDirPrefix()).toBe(`img2vm-${process.pid}.${hostTag()}-`);
    expect(workDirPrefix('plan-')).toBe(`img2vm-plan-${process.pid}.${hostTag()}-`);
    expect(tempBeside('/out/dir/disk.qcow2')).toBe(`/out/dir/.disk.qcow2.img2vm-${process.pid}.${hostTag()}.tmp`);
  });

  it('are judged dead only for this host, a gone pid, and never this process', () => {
    const re = /^x-(\d+)\.([0-9a-f]{8})$/;
    const dead = deadPid();
    expect(deadOwner(`x-${dead}.${hostTag()}`, re)).toBe(true);
    expect(deadOwner(`x-${dead}.00000000`, re)).toBe(hostTag() === '00000000');
    expect(deadOwner(`x-${process.pid}.${hostTag()}`, re)).toBe(false);
    expect(deadOwner(`x-1.${hostTag()}`, re)).toBe(false); // init is alive
    expect(deadOwner(`x-0.${hostTag()}`, re)).toBe(false);
    expect(deadOwner('unrelated', re)).toBe(false);
  });
});

describe('sweeping', () => {
  it('removes the work directories of dead runs of this host, and nothing else in TMPDIR', async () => {
    const dead = deadPid();
    const gone = [`img2vm-${dead}.${hostTag()}-abcDEF`, `img2vm-plan-${dead}.${hostTag()}-a1b2c3`];
    const kept = [
      `img2vm-${process.pid}.${hostTag()}-livelv`, // a live run's
      `img2vm-${dead}.0badc0de-abcdef`, // another host's (or pid namespace's)
      `img2vm-${dead}-abcdef`, // not a name img2vm makes
      'img2vm-cache',
      'other',
    ].filter((n) => hostTag() !== '0badc0de' || !n.includes('0badc0de'));
    for (const n of [...gone, ...kept]) {
      mkdirSync(join(dir, n));
      writeFileSync(join(dir, n, 'f'), 'x');
    }
    expect((await sweepWorkDirs(dir)).sort()).toEqual(gone.map((n) => join(dir, n)).sort());
    expect(readdirSync(dir).sort()).toEqual(kept.sort());
  });

  it('removes temporary outputs and side files of dead runs beside the output, never finished files', async () => {
    const dead = deadPid();
    const mine = tempBeside(join(dir, 'disk.img'));
    const theirs = join(dirname(mine), basename(mine).replace(`-${process.pid}.`, `-${dead}.`));
    const side = join(dir, `.disk.vmlinuz.img2vm-${dead}.${hostTag()}.tmp`);
    for (const f of [mine, theirs, side, join(dir, 'disk.img'), join(dir, '.hidden')]) writeFileSync(f, 'x');
    expect((await sweepTempOutputs(dir)).sort()).toEqual([theirs, side].sort());
    expect(readdirSync(dir).sort()).toEqual(['.hidden', basename(mine), 'disk.img'].sort());
  });

  it('a directory that does not exist has nothing to sweep', async () => {
    expect(await sweepWorkDirs(join(dir, 'none'))).toEqual([]);
  });
});
