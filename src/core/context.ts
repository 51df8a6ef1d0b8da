// What every stage receives: a private work directory, cancellation, an event sink and the resource scope.
import type { EventSink } from './events.js';
import type { Random } from './random.js';
import type { Scope } from './scope.js';

export interface RunContext {
  /** A private temporary directory, removed by the scope. */
  work: string;
  signal: AbortSignal;
  sink: EventSink;
  scope: Scope;
  random: Random;
}
