// Everything the CLI writes passes through printable(): the renderers escape event texts, and no other code in src/cli writes to stdout or stderr.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Img2vmEvent } from '../../src/core/events.js';
import { printableEvent, stderr, stdout, stdoutJson } from '../../src/cli/print.js';
import { plainRenderer } from '../../src/cli/render.js';

const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;
const EVIL = 'usr/\x1b]0;pwned\x07\x1b]52;c;eA==\x07\x9b2J\rx';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the CLI writers', () => {
  it('escape what they write, keeping newlines; JSON stays JSON', () => {
    const out: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => (out.push(String(s)), true));
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
    stderr(`img2vm: error: ${EVIL}\n  hint: x\n`);
    stdout(`${EVIL}\n`);
    stdoutJson({ error: EVIL });
    expect(out.join('')).not.toMatch(CONTROL);
    expect(out[0]).toBe('img2vm: error: usr/\\x1b]0;pwned\\x07\\x1b]52;c;eA==\\x07\\x9b2J\\rx\n  hint: x\n');
    expect(JSON.parse(out[2]!)).toEqual({ error: EVIL });
  });
});

describe('the renderers', () => {
  const events: Img2vmEvent[] = [
    { type: 'stage-start', stage: 'rootfs', title: `Flatten ${EVIL}` },
    { type: 'progress', stage: 'rootfs', done: 1, total: 2, unit: 'entries', what: EVIL },
    { type: 'log', level: 'warn', stage: 'rootfs', message: `dropped ${EVIL}` },
    { type: 'log', level: 'debug', stage: 'rootfs', message: `debug ${EVIL}` },
    { type: 'stage-end', stage: 'rootfs', ms: 5, detail: EVIL },
    { type: 'stage-skip', stage: 'guest', reason: EVIL },
  ];

  it('the plain renderer writes every event text escaped', () => {
    const out: string[] = [];
    const r = plainRenderer(true, (s) => out.push(s), 0);
    for (const e of events) r.sink(e);
    const text = out.join('');
    expect(text).toContain('warning: dropped usr/\\x1b]0;pwned\\x07');
    expect(text).toContain('[guest] skipped: usr/\\x1b');
    expect(text).not.toMatch(CONTROL);
  });

  it('what listr2 is given to draw (titles, details, reasons) is escaped and on one line', () => {
    for (const e of events) {
      const p = printableEvent({ ...e, ...('title' in e ? { title: `${e.title}\nsecond` } : {}) });
      for (const [k, v] of Object.entries(p)) if (typeof v === 'string') expect(v, k).not.toMatch(CONTROL);
      if (p.type === 'stage-start') expect(p.title).not.toContain('\n');
    }
  });
});

describe('src/cli', () => {
  it('writes to stdout and stderr only through print.ts, but for the guest console of `img2vm run`', () => {
    const dir = join(import.meta.dirname, '..', '..', 'src', 'cli');
    const raw: string[] = [];
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts') && n !== 'print.ts')) {
      const text = readFileSync(join(dir, f), 'utf8');
      for (const m of text.matchAll(/(process\.(?:stdout|stderr)\.write|console\.(?:log|error|warn|info))\(([^\n]*)/g))
        raw.push(`${f}: ${m[1]}(${m[2]}`);
    }
    expect(raw).toEqual([
      // img2vm run IMAGE: the guest's console as docker run gives a container's output.
      'run-image.ts: process.stdout.write(lf.end()));',
      'run-image.ts: process.stdout.write(lf ? lf.push(b) : b),',
      'vm-commands.ts: process.stdout.write(lf.end()));',
      'vm-commands.ts: process.stdout.write(lf ? lf.push(b) : b),',
    ]);
  });
});
