// Events that stages emit; only cli/ turns them into output.

export type StageId = 'source' | 'guest' | 'rootfs' | 'disk' | 'boot' | 'output';

export type Img2vmEvent =
  | { type: 'stage-start'; stage: StageId; title: string }
  | { type: 'stage-end'; stage: StageId; ms: number; detail?: string }
  | { type: 'stage-skip'; stage: StageId; reason: string }
  | { type: 'log'; level: 'info' | 'warn' | 'debug'; message: string; stage?: StageId };

export type EventSink = (event: Img2vmEvent) => void;

export const nullSink: EventSink = () => {};

/** Times a stage and reports its start and end to the sink. */
export async function stage<T>(
  sink: EventSink,
  id: StageId,
  title: string,
  timings: Partial<Record<StageId, number>>,
  fn: () => Promise<T>,
  detail?: (r: T) => string | undefined,
): Promise<T> {
  sink({ type: 'stage-start', stage: id, title });
  const t0 = performance.now();
  const r = await fn();
  const ms = Math.round(performance.now() - t0);
  timings[id] = (timings[id] ?? 0) + ms;
  sink({ type: 'stage-end', stage: id, ms, detail: detail?.(r) });
  return r;
}
