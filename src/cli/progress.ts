// Turns progress events into a line with a bar, the rate and the time left, for both renderers.
import type { ProgressUnit } from '../core/events.js';
import { formatSize } from '../core/units.js';

export interface ProgressState {
  done: number;
  total?: number;
  unit: ProgressUnit;
  what?: string;
}

/** Tracks the rate of one stage's progress over a sliding window, so a stall shows as a falling rate. */
export class RateMeter {
  private samples: { t: number; done: number }[] = [];

  constructor(private readonly windowMs = 5000) {}

  add(done: number, t = performance.now()): void {
    this.samples.push({ t, done });
    while (this.samples.length > 2 && t - this.samples[0]!.t > this.windowMs) this.samples.shift();
  }

  /** Units per second over the window; undefined until two samples are apart in time. */
  rate(): number | undefined {
    const a = this.samples[0];
    const b = this.samples.at(-1);
    if (!a || !b || b.t - a.t < 250) return undefined;
    return ((b.done - a.done) * 1000) / (b.t - a.t);
  }
}

function amount(n: number, unit: ProgressUnit): string {
  return unit === 'bytes' ? formatSize(Math.round(n)) : String(Math.round(n));
}

function duration(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.ceil(s - m * 60)).padStart(2, '0')}s`;
}

export function bar(fraction: number, width = 20): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return `${'█'.repeat(full)}${'░'.repeat(width - full)}`;
}

/** "[████░░░░] 45% 120M of 270M, 35M/s, 4s left" — or without a total: "120M, 35M/s". */
export function formatProgress(p: ProgressState, rate: number | undefined, withBar: boolean): string {
  const parts: string[] = [];
  const unitName = p.unit === 'bytes' ? '' : ` ${p.what ?? 'entries'}`;
  if (p.total !== undefined && p.total > 0) {
    const f = p.done / p.total;
    parts.push(
      `${withBar ? `${bar(f)} ` : ''}${Math.floor(f * 100)}% ${amount(p.done, p.unit)} of ${amount(p.total, p.unit)}${unitName}`,
    );
  } else parts.push(`${amount(p.done, p.unit)}${unitName}`);
  if (rate !== undefined) {
    parts.push(`${amount(rate, p.unit)}${p.unit === 'bytes' ? '' : unitName}/s`);
    if (p.total !== undefined && rate > 0 && p.done < p.total)
      parts.push(`${duration((p.total - p.done) / rate)} left`);
  }
  return parts.join(', ');
}
