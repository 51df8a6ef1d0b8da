// img2vm's console protocol as `run` and `test` read it: the first nonce is the only true one, exit lines split anywhere, CR LF.
import { describe, expect, it } from 'vitest';
import { CrlfToLf, plainLine, signalExitCode, WorkloadConsole } from '../../src/vm/workload.js';

const NONCE = '0123456789abcdef0123456789abcdef';
const OTHER = 'ffffffffffffffffffffffffffffffff';

/** Feeds the chunks; returns what the user sees, img2vm's lines, and the parser. */
function feed(chunks: (string | Buffer)[]): { output: string; own: string[]; wl: WorkloadConsole } {
  const wl = new WorkloadConsole();
  let output = '';
  const own: string[] = [];
  for (const c of chunks) {
    const p = wl.feed(Buffer.isBuffer(c) ? c : Buffer.from(c));
    output += p.output.toString();
    own.push(...p.own);
  }
  const p = wl.flush();
  output += p.output.toString();
  own.push(...p.own);
  return { output, own, wl };
}

/** A whole boot as a serial console carries it: CR LF line ends, the init's leading newline before the exit line. */
function transcript(workload: string, status: number, nonce = NONCE): string {
  return `[    0.000000] Linux version 6.1.0\r\nimg2vm-init: nonce=${nonce}\r\n${workload}\r\nimg2vm-exit: nonce=${nonce} status=${status}\r\n[    3.1] reboot: Power down\r\n`;
}

describe('WorkloadConsole', () => {
  it('takes the nonce and the status, and passes everything else through byte for byte', () => {
    const r = feed([transcript('hello\r\n\x1b[1mbold\x1b[0m\r\n', 3)]);
    expect(r.wl.nonce).toBe(NONCE);
    expect(r.wl.status).toBe(3);
    expect(r.output).toBe('[    0.000000] Linux version 6.1.0\r\nhello\r\n\x1b[1mbold\x1b[0m\r\n');
    expect(r.own).toEqual([
      `img2vm-init: nonce=${NONCE}`,
      `img2vm-exit: nonce=${NONCE} status=3`,
      '[    3.1] reboot: Power down',
    ]);
  });

  it('reads the same from any split of the stream, one byte at a time included', () => {
    const text = transcript('out\r\n', 0);
    const whole = feed([text]);
    const bytes = feed([...Buffer.from(text)].map((b) => Buffer.from([b])));
    expect(bytes.output).toBe(whole.output);
    expect(bytes.own).toEqual(whole.own);
    expect(bytes.wl.status).toBe(0);
    for (let cut = 1; cut < text.length; cut += 7) {
      const r = feed([text.slice(0, cut), text.slice(cut)]);
      expect([r.output, r.wl.status]).toEqual([whole.output, 0]);
    }
  });

  it("ignores a forged exit line and a second nonce line: both are the workload's output", () => {
    const forged = `img2vm-init: nonce=${OTHER}\r\nimg2vm-exit: nonce=${OTHER} status=0\r\nimg2vm-exit: nonce=${NONCE.toUpperCase().slice(0, 16)} status=0\r\n`;
    const r = feed([transcript(forged, 7)]);
    expect(r.wl.nonce).toBe(NONCE);
    expect(r.wl.status).toBe(7);
    expect(r.output).toContain(`img2vm-init: nonce=${OTHER}\r\nimg2vm-exit: nonce=${OTHER} status=0\r\n`);
    expect(r.own.filter((l) => l.includes(OTHER))).toEqual([]);
  });

  it("believes no exit line before a nonce line (a disk without img2vm's init)", () => {
    const r = feed([`img2vm-exit: nonce=${NONCE} status=0\r\nlogin: `]);
    expect(r.wl.nonce).toBeUndefined();
    expect(r.wl.status).toBeUndefined();
    expect(r.output).toBe(`img2vm-exit: nonce=${NONCE} status=0\r\nlogin: `);
  });

  it('takes status 0 to 255 only, and nonces of at least 16 hex digits', () => {
    expect(feed([transcript('', 256)]).wl.status).toBeUndefined();
    expect(feed([transcript('', 255)]).wl.status).toBe(255);
    expect(feed([transcript('', 1, 'abcdef')]).wl.nonce).toBeUndefined();
    expect(feed([transcript('', 1, 'abcdef0123456789')]).wl.status).toBe(1);
  });

  it('keeps the exit line whole when escape sequences and carriage returns surround it', () => {
    const r = feed([
      `img2vm-init: nonce=${NONCE}\n`,
      `\r\x1b[0m`,
      `img2vm-exit: nonce=${NONCE} sta`,
      `tus=42\r`,
      `\r\n`,
    ]);
    expect(r.wl.status).toBe(42);
  });

  it('drops only the newline the init writes before its exit line', () => {
    // The workload ended its line: the empty line is the init's.
    expect(feed([transcript('a\r\nb\r\n', 0)]).output).toMatch(/a\r\nb\r\n$/);
    // Empty lines of the workload itself stay.
    expect(feed([transcript('a\r\n\r\n\r\nb\r\n', 0)]).output).toMatch(/a\r\n\r\n\r\nb\r\n$/);
  });

  it("shows a prompt without a newline at once, holding back only what could be img2vm's", () => {
    const wl = new WorkloadConsole();
    expect(wl.feed(Buffer.from('Password: ')).output.toString()).toBe('Password: ');
    expect(wl.feed(Buffer.from('\r\nimg2')).output.toString()).toBe('\r\n');
    expect(wl.feed(Buffer.from('x')).output.toString()).toBe('img2x');
    expect(wl.feed(Buffer.from(' more')).output.toString()).toBe(' more');
    expect(wl.feed(Buffer.from('\r\nimg2vm-init: no newline yet')).output.toString()).toBe('\r\n');
    expect(wl.flush().own).toEqual(['img2vm-init: no newline yet']);
  });

  it("releases an endless line that looks like img2vm's once it is longer than any line of the protocol", () => {
    const wl = new WorkloadConsole({ maxLine: 64 });
    const out = wl.feed(Buffer.from(`img2vm-init: ${'x'.repeat(100)}`)).output.toString();
    expect(out).toBe(`img2vm-init: ${'x'.repeat(100)}`);
  });

  it('remembers why the init gave up, for a boot that ends without an exit line', () => {
    const r = feed([`img2vm-init: nonce=${NONCE}\r\nimg2vm-init: fatal: no root file system with UUID 1234\r\n`]);
    expect(r.wl.fatal).toBe('no root file system with UUID 1234');
    expect(r.wl.exited).toBe(false);
    expect(r.own).toHaveLength(2);
    expect(r.output).toBe('');
  });
});

describe('helpers', () => {
  it('plainLine removes colours, titles, CR and trailing space', () => {
    expect(plainLine('\x1b[32mok\x1b[0m \x1b]0;title\x07\r  ')).toBe('ok');
  });

  it('CrlfToLf turns CR LF into LF across chunk boundaries and keeps a lone CR', () => {
    const c = new CrlfToLf();
    const out = [c.push(Buffer.from('a\r')), c.push(Buffer.from('\nb\r')), c.push(Buffer.from('c\r\n')), c.end()]
      .map((b) => b.toString())
      .join('');
    expect(out).toBe('a\nb\rc\n');
  });

  it('exit codes of signals follow the shell', () => {
    expect([signalExitCode('SIGINT'), signalExitCode('SIGTERM'), signalExitCode('SIGHUP')]).toEqual([130, 143, 129]);
  });
});

describe('WorkloadConsole with the boot nonce img2vm test handed the guest', () => {
  const BOOT = 'b0'.repeat(16);
  const run = (text: string) => {
    const wl = new WorkloadConsole({ hostNonce: BOOT });
    const p = wl.feed(Buffer.from(text));
    return { wl, output: p.output.toString(), own: p.own };
  };

  it("believes the init's nonce line only when it carries the boot nonce", () => {
    const r = run(`img2vm-init: nonce=${NONCE} host=${BOOT}\r\nhi\r\n\r\nimg2vm-exit: nonce=${NONCE} status=4\r\n`);
    expect([r.wl.nonce, r.wl.status]).toEqual([NONCE, 4]);
    expect(r.own[0]).toBe(`img2vm-init: nonce=${NONCE} host=${BOOT}`);
  });

  it("takes a nonce line without it, with another or with none for the guest's output, and remembers it", () => {
    for (const host of ['', ' host=none', ` host=${OTHER}`]) {
      const line = `img2vm-init: nonce=${OTHER}${host}`;
      const r = run(`${line}\r\nimg2vm-exit: nonce=${OTHER} status=0\r\n`);
      expect([r.wl.nonce, r.wl.status], host).toEqual([undefined, undefined]);
      expect(r.wl.unbound).toBe(line);
      expect(r.output).toContain(line);
    }
  });

  it('without a boot nonce (img2vm run), the first nonce line is believed whatever it carries', () => {
    const wl = new WorkloadConsole();
    wl.feed(Buffer.from(`img2vm-init: nonce=${NONCE} host=none\r\n`));
    expect(wl.nonce).toBe(NONCE);
  });
});
