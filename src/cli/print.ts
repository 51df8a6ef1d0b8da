// img2vm's own writes to stdout and stderr: each goes through printable() (or printableJson()), so text from outside reaches the terminal only as text.
import type { Img2vmEvent } from '../core/events.js';
import { printable, printableJson } from '../core/printable.js';

/** Writes text to stdout, unsafe characters escaped (newlines kept). */
export function stdout(text: string): void {
  process.stdout.write(printable(text));
}

/** Writes text to stderr, unsafe characters escaped (newlines kept). */
export function stderr(text: string): void {
  process.stderr.write(printable(text));
}

/** Writes one JSON document to stdout, as printableJson writes it (indented by 2, or on one line with space null). */
export function stdoutJson(value: unknown, space: number | null = 2): void {
  process.stdout.write(`${printableJson(value, space)}\n`);
}

/**
 * The event with each of its texts escaped, for renderers that hand them to something else to draw (listr2): a
 * title, detail or reason on one line, a log message as it is written.
 */
export function printableEvent(e: Img2vmEvent): Img2vmEvent {
  const out: Record<string, unknown> = { ...e };
  for (const [k, v] of Object.entries(e))
    if (typeof v === 'string' && k !== 'type' && k !== 'stage')
      out[k] = printable(v, { newlines: k === 'message' || k === 'text' });
  return out as Img2vmEvent;
}
