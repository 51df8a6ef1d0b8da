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

/** What a conversion's stages receive: the run's context and the one epoch every time img2vm writes comes from. */
export interface Env extends RunContext {
  /** Seconds since 1970: SOURCE_DATE_EPOCH when set, else when the run started. */
  epoch: number;
  /** For what must not move without SOURCE_DATE_EPOCH either (archive members, the initramfs): it, else 0. */
  fixedEpoch: number;
}
