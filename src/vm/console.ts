// Reads a guest's serial console: cleans the byte stream, times boot milestones and decides pass or fail.
import { StringDecoder } from 'node:string_decoder';

/**
 * Turns raw console bytes into plain text: UTF-8 decoded across chunk boundaries, terminal escape sequences
 * (colours, cursor moves, OSC titles) removed even when split between chunks, CR LF and lone CR made LF.
 */
export class ConsoleCleaner {
  private readonly decoder = new StringDecoder('utf8');
  private state: 'text' | 'esc' | 'csi' | 'osc' | 'oscEsc' | 'escArg' = 'text';
  private lastCR = false;

  push(chunk: Buffer | string): string {
    const s = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    let out = '';
    for (const ch of s) {
      const c = ch.codePointAt(0)!;
      switch (this.state) {
        case 'esc':
          if (ch === '[') this.state = 'csi';
          else if (ch === ']') this.state = 'osc';
          else if (ch === '(' || ch === ')' || ch === '#' || ch === '%') this.state = 'escArg';
          else this.state = 'text';
          continue;
        case 'csi':
          if (c >= 0x40 && c <= 0x7e) this.state = 'text';
          continue;
        case 'osc':
          if (c === 0x07) this.state = 'text';
          else if (c === 0x1b) this.state = 'oscEsc';
          continue;
        case 'oscEsc':
        case 'escArg':
          this.state = 'text';
          continue;
        case 'text':
          break;
      }
      if (c === 0x1b) {
        this.state = 'esc';
        continue;
      }
      if (ch === '\n') {
        if (!this.lastCR) out += '\n';
        this.lastCR = false;
        continue;
      }
      this.lastCR = ch === '\r';
      if (this.lastCR) out += '\n';
      else if (ch === '\t' || c >= 0x20) out += ch === '\u009b' ? '' : ch;
    }
    return out;
  }
}

/** Splits cleaned text into complete lines, keeping the line still being written (a prompt has no newline). */
export class LineBuffer {
  partial = '';

  constructor(private readonly maxLine = 4096) {}

  push(text: string): string[] {
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop()!;
    if (this.partial.length > this.maxLine) this.partial = this.partial.slice(-this.maxLine);
    return parts;
  }
}

export type Milestone = 'firmware' | 'kernel' | 'init' | 'login' | 'marker' | 'ready';

export type Verdict =
  | {
      status: 'ready';
      /** What made the guest count as up. */
      matched: 'marker' | 'login' | 'expect';
      line: string;
      /** Milliseconds since QEMU started. */
      at: number;
    }
  | { status: 'failed'; reason: string; line: string; at: number; hint?: string };

export interface WatchOptions {
  /**
   * The nonce `img2vm test` handed this boot (see BOOT_NONCE_PREFIX): readiness lines are believed only when they
   * carry it. Without one no readiness line is believed.
   */
  nonce?: string;
  /** A custom readiness pattern, matched against each console line (and the line still being written). */
  expect?: RegExp;
  /** 'login': ready at the first login prompt (a login session follows), without waiting for the marker. */
  until?: 'ready' | 'login';
  /** How long a login prompt waits for the readiness marker before it counts on its own. */
  loginGraceMs?: number;
  /** How long after a GRUB error the kernel has to start before the error counts as fatal. */
  grubGraceMs?: number;
}

/**
 * The readiness lines img2vm's distribution guests print on /dev/console (templates/<family>/files/usr/local/sbin/
 * img2vm-ready), each with the nonce the host handed the boot (or "none" when it was given none: `img2vm run`,
 * plain QEMU):
 *   img2vm-checking: nonce=N                  the check has begun (before the console login starts)
 *   img2vm-ready: nonce=N kernel=K            the system is up and no unit failed
 *   img2vm-degraded: nonce=N kernel=K state=S failed=U,... waiting=U,...   it is not: failed units, or still starting
 * A line with another nonce (canned in the image, replayed from another boot, printed early) is ignored. The nonce
 * comes from the host through the firmware tables and is readable by root in the guest, so it proves a line was
 * printed during this boot, after the guest could read it, not which process printed it.
 */
export const CHECKING_LINE = /\bimg2vm-checking: nonce=(\S+)/;
export const READY_MARKER = /\bimg2vm-ready: nonce=(\S+) kernel=(\S+)/;
export const DEGRADED_LINE = /\bimg2vm-degraded: nonce=(\S+) kernel=(\S+) state=(\S+) failed=(\S*) waiting=(\S*)/;
/** Anything that looks like one of them (an older img2vm's `img2vm-ready: RELEASE` too), for the report of what was ignored. */
const READINESS_LIKE = /\bimg2vm-(?:checking|ready|degraded): /;
/** How the QEMU SMBIOS OEM string (or the direct-kernel command line parameter) that carries the boot nonce starts. */
export const BOOT_NONCE_PREFIX = 'img2vm.nonce=';
export const BOOT_NONCE = /^[0-9a-f]{16,64}$/;
/** Failed units named in a failure reason; the rest are counted. */
const MAX_UNITS_NAMED = 10;
/** A getty prompt ("localhost login: "), alone or with a kernel message printed right after it. */
export const LOGIN_PROMPT = /\blogin: *(?:$|\[ *\d+\.\d+\])/;
export const LOGIN_GRACE_MS = 10_000;
export const GRUB_GRACE_MS = 15_000;

interface Rule {
  re: RegExp;
  /** Only before the kernel starts (bootloader and firmware text). */
  early?: boolean;
  /** Also checked on the unfinished line: prompts that wait for input never end their line. */
  prompt?: boolean;
  reason: (m: RegExpExecArray, w: ConsoleWatcher) => string;
}

/** Console text that means the boot has failed and will not recover by waiting. */
const FAILURES: readonly Rule[] = [
  { re: /Kernel panic - not syncing: ?(.*)/, reason: (m) => `kernel panic: ${m[1]!.trim() || 'not syncing'}` },
  { re: /Entering rescue mode/, early: true, reason: (_m, w) => `GRUB entered rescue mode${w.detail('grub')}` },
  {
    re: /^grub rescue> *$/,
    early: true,
    prompt: true,
    reason: (_m, w) => `GRUB entered rescue mode${w.detail('grub')}`,
  },
  {
    re: /^grub> *$/,
    early: true,
    prompt: true,
    reason: (_m, w) => `GRUB stopped at its command line (no usable grub.cfg?)${w.detail('grub')}`,
  },
  {
    re: /you need to load the kernel first|Press any key to continue/,
    early: true,
    reason: (_m, w) => `GRUB could not boot the kernel${w.detail('grub')}`,
  },
  {
    re: /No bootable device/,
    early: true,
    reason: (_m, w) => `the BIOS found no bootable disk${w.detail('firmware')}`,
  },
  {
    re: /No bootable option or device was found/,
    early: true,
    reason: (_m, w) => `the UEFI firmware found nothing to boot${w.detail('firmware')}`,
  },
  {
    re: /^Shell> *$/,
    early: true,
    prompt: true,
    reason: () => 'the UEFI firmware dropped to its shell: no bootable EFI binary found',
  },
  {
    re: /^\(initramfs\) *$/,
    prompt: true,
    reason: (_m, w) => `dropped to the initramfs emergency shell${w.detail('initramfs')}`,
  },
  {
    re: /You are in emergency mode|Give root password for maintenance|Cannot open access to console, the root account is locked/,
    reason: (_m, w) => `systemd entered emergency mode${w.detail('systemd')}`,
  },
];

/** Lines kept to explain a failure that is announced later (GRUB prints the error, then the prompt). */
const DETAILS: readonly {
  re: RegExp;
  key: 'grub' | 'firmware' | 'initramfs' | 'systemd';
  early?: boolean;
  overrides?: boolean;
}[] = [
  // GRUB redraws its screen with cursor moves, not newlines, so its banner can end up on the error's line, and what
  // it printed before on the same line as the error (a suite run named no error at all under load).
  { re: /\berror: .+?(?=\s*GNU GRUB|$)/, key: 'grub', early: true },
  { re: /Boot failed: .+/, key: 'firmware', early: true },
  { re: /BdsDxe: failed to load .+/, key: 'firmware', early: true },
  // Debian's initramfs says it gave up first, then names the missing device: the name explains more.
  { re: /Gave up waiting for root (?:file system )?device/, key: 'initramfs' },
  { re: /ALERT! .+/, key: 'initramfs', overrides: true },
  { re: /\[FAILED\] Failed to (?:mount|start) .+/, key: 'systemd' },
];

/**
 * A console watcher: feed it serial output with timestamps, read milestones and the verdict.
 * Pure (no clock, no I/O) so recorded transcripts replay exactly in tests.
 *
 * Without --expect the guest is up on the readiness marker, or on a login prompt (disks made with --raw have
 * no marker unit): a prompt waits loginGraceMs for the marker, because getty often starts just before it.
 */
export class ConsoleWatcher {
  readonly milestones: Partial<Record<Milestone, number>> = {};
  verdict: Verdict | undefined;
  kernelRelease: string | undefined;
  /** Readiness lines not believed (without this boot's nonce), the first few, for the failure report. */
  readonly ignored: string[] = [];
  /** The guest's readiness check began with this boot's nonce: a verdict line will follow, a login prompt does not decide. */
  checking = false;
  private readonly cleaner = new ConsoleCleaner();
  private readonly lines = new LineBuffer();
  private readonly tail: string[] = [];
  private readonly details = new Map<string, string>();
  private pendingLogin: { line: string; at: number } | undefined;
  private grubErrorAt: number | undefined;
  private initCandidate: number | undefined;
  private readonly loginGraceMs: number;
  private readonly grubGraceMs: number;

  constructor(private readonly opts: WatchOptions = {}) {
    this.loginGraceMs = opts.loginGraceMs ?? LOGIN_GRACE_MS;
    this.grubGraceMs = opts.grubGraceMs ?? GRUB_GRACE_MS;
  }

  /** Feeds a chunk of console output received `at` ms after QEMU started; returns the cleaned text. */
  feed(chunk: Buffer | string, at: number): string {
    const text = this.cleaner.push(chunk);
    if (this.milestones.firmware === undefined && /\S/.test(text)) this.milestones.firmware = at;
    for (const line of this.lines.push(text)) {
      this.remember(line);
      this.check(line, at, false);
    }
    const partial = this.lines.partial;
    if (partial) this.check(partial, at, true);
    this.tick(at);
    return text;
  }

  /** Time-based decisions (a login prompt without marker, a GRUB error that nothing follows). */
  tick(at: number): Verdict | undefined {
    if (this.verdict) return this.verdict;
    if (this.pendingLogin && !this.checking && at - this.pendingLogin.at >= this.loginGraceMs) {
      this.decide({ status: 'ready', matched: 'login', line: this.pendingLogin.line, at: this.pendingLogin.at });
    } else if (
      this.grubErrorAt !== undefined &&
      this.milestones.kernel === undefined &&
      at - this.grubErrorAt >= this.grubGraceMs
    ) {
      this.decide({
        status: 'failed',
        reason: `GRUB failed: ${this.details.get('grub') ?? 'error'}`,
        line: this.details.get('grub') ?? '',
        at,
      });
    }
    return this.verdict;
  }

  /** The last console lines (for a failure report), the unfinished one included. */
  lastLines(n = 20): string[] {
    const all = this.lines.partial.trim() ? [...this.tail, this.lines.partial] : [...this.tail];
    return all.slice(-n);
  }

  /** " (<the remembered line>)" for a failure reason, or "". */
  detail(key: string): string {
    const d = this.details.get(key);
    return d ? ` (${d})` : '';
  }

  private remember(line: string): void {
    if (!line.trim()) return;
    this.tail.push(line);
    if (this.tail.length > 50) this.tail.shift();
  }

  private decide(v: Verdict): void {
    if (this.verdict) return;
    this.verdict = v;
    if (v.status === 'ready') {
      this.milestones.ready = v.at;
      if (this.milestones.init === undefined && this.initCandidate !== undefined)
        this.milestones.init = this.initCandidate;
    }
  }

  private check(line: string, at: number, partial: boolean): void {
    const m = this.milestones;
    const early = m.kernel === undefined;
    if (!partial) {
      const lv = /Linux version (\S+)/.exec(line);
      if (lv && m.kernel === undefined) {
        m.kernel = at;
        this.kernelRelease ??= lv[1];
      }
      // A quiet kernel (img2vm's init boots with quiet) says nothing: the init announcing itself proves it ran.
      if (m.kernel === undefined && /^img2vm-init: nonce=/.test(line.trim())) m.kernel = at;
      if (m.kernel !== undefined && m.init === undefined) {
        if (/systemd\[1\]: |^Welcome to .*!|INIT: version/.test(line)) m.init = at;
        // Without an initramfs this is the real init; with one it is only a fallback.
        else if (/Run \S+ as init process/.test(line)) this.initCandidate ??= at;
      }
      for (const d of DETAILS) {
        if (d.early && !early) continue;
        const dm = d.re.exec(line);
        if (dm) {
          // The first line usually names the cause; later ones are its consequences.
          if (!this.details.has(d.key) || d.overrides) this.details.set(d.key, dm[0].trim());
          if (d.key === 'grub') this.grubErrorAt ??= at;
        }
      }
    }
    const readiness = partial ? undefined : this.readiness(line, at);
    if (LOGIN_PROMPT.test(line) && m.login === undefined && !early) m.login = at;
    if (this.verdict) return;

    for (const r of FAILURES) {
      if ((r.early && !early) || (partial && !r.prompt)) continue;
      const fm = r.re.exec(line.trim());
      if (fm) return this.decide({ status: 'failed', reason: r.reason(fm, this), line: line.trim(), at });
    }

    if (this.opts.expect) {
      if (this.opts.expect.test(line)) this.decide({ status: 'ready', matched: 'expect', line: line.trim(), at });
      return;
    }
    if (readiness) return this.decide(readiness);
    if (this.checking) return;
    if (this.opts.until === 'login') {
      if (m.login !== undefined) this.decide({ status: 'ready', matched: 'login', line: line.trim(), at: m.login });
      return;
    }
    if (m.login !== undefined && !this.pendingLogin) this.pendingLogin = { line: line.trim(), at: m.login };
  }

  /**
   * A readiness line of this boot: the verdict it carries, if any. Lines with another nonce are remembered, not
   * believed; a check that found no nonce fails, since no line of it could ever be believed.
   */
  private readiness(line: string, at: number): Verdict | undefined {
    const c = CHECKING_LINE.exec(line);
    const r = READY_MARKER.exec(line);
    const d = DEGRADED_LINE.exec(line);
    const nonce = (c ?? r ?? d)?.[1];
    const text = line.trim();
    if (nonce === undefined || nonce !== this.opts.nonce || !this.opts.nonce) {
      if (nonce === 'none' && this.opts.nonce && !this.verdict && !this.opts.expect) {
        return {
          status: 'failed',
          line: text,
          at,
          reason: `the guest's readiness check found no nonce (${text.slice(text.indexOf('img2vm-'))}): it reads the SMBIOS OEM string ${BOOT_NONCE_PREFIX}… that img2vm test passes, through /sys/firmware/dmi/entries, or ${BOOT_NONCE_PREFIX} on the kernel command line of a direct-kernel boot`,
          hint: "the guest's kernel needs DMI sysfs (CONFIG_DMI_SYSFS, the dmi-sysfs module); Debian's cloud kernel has it built in",
        };
      }
      if (READINESS_LIKE.test(line) && this.ignored.length < 5) this.ignored.push(text);
      return undefined;
    }
    if (c) {
      this.checking = true;
      return undefined;
    }
    const m = this.milestones;
    m.marker ??= at;
    this.kernelRelease = (r ?? d)![2];
    if (r) return { status: 'ready', matched: 'marker', line: text, at: m.marker };
    return { status: 'failed', line: text, at, ...degradedReason(d![3]!, units(d![4]!), units(d![5]!)) };
  }

  /** "; ignored …" for a timeout or power-off report: readiness lines that did not carry this boot's nonce. */
  ignoredNote(): string {
    if (!this.ignored.length) return '';
    return `; ignored ${this.ignored.length === 1 ? 'a readiness line' : `${this.ignored.length} readiness lines`} without this boot's nonce (${this.ignored[0]})`;
  }
}

function units(list: string): string[] {
  return list.split(',').filter(Boolean);
}

function named(list: string[]): string {
  const shown = list.slice(0, MAX_UNITS_NAMED).join(', ');
  return list.length > MAX_UNITS_NAMED ? `${shown} and ${list.length - MAX_UNITS_NAMED} more` : shown;
}

/** Why a guest that printed img2vm-degraded did not pass, naming its failed units (or what it still waited for). */
function degradedReason(state: string, failed: string[], waiting: string[]): { reason: string; hint: string } {
  const hint = failed.length
    ? `boot the disk with \`img2vm run\` and look at \`systemctl status ${failed[0]}\` (or \`rc-status\`) and the journal`
    : 'boot the disk with `img2vm run` and look at what it waits for (`systemctl list-jobs`)';
  if (state === 'degraded' || (state === 'running' && failed.length)) {
    return { reason: `the guest came up degraded: failed units: ${named(failed) || '(none named)'}`, hint };
  }
  const failedToo = failed.length ? `; failed units: ${named(failed)}` : '';
  if (state === 'starting' || state === 'initializing') {
    return {
      reason: `the guest was still starting when its readiness check gave up${waiting.length ? `: waiting for ${named(waiting)}` : ''}${failedToo}`,
      hint,
    };
  }
  return { reason: `the guest's system is in state ${state}${failedToo}`, hint };
}
