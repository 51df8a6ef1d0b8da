// Renders pipeline events: listr2 on a terminal, plain lines otherwise, nothing with --json or --quiet.
import type * as Listr2 from 'listr2';
import type { ListrTaskWrapper, ListrRendererFactory } from 'listr2';
import type { EventSink, Img2vmEvent, StageId } from '../core/events.js';
import { printableEvent, stderr } from './print.js';
import { formatProgress, RateMeter } from './progress.js';
import { lazy } from '../core/lazy.js';

/** Only a terminal's progress display needs it. */
const listr2 = lazy<typeof Listr2>('listr2');

export interface Renderer {
  sink: EventSink;
  /** Resolves when the renderer has drawn its last frame. */
  done(ok: boolean): Promise<void>;
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)}s` : `${ms}ms`;
}

/**
 * One line per stage event; progress at most every intervalMs per stage (CI logs show a long pull moving
 * without drowning in lines). Every text of an event is escaped (printableEvent) before it is written.
 */
export function plainRenderer(verbose: boolean, write: (s: string) => void = stderr, intervalMs = 5000): Renderer {
  const meters = new Map<StageId, { meter: RateMeter; last: number }>();
  return {
    sink(event: Img2vmEvent) {
      const e = printableEvent(event);
      switch (e.type) {
        case 'stage-start':
          meters.set(e.stage, { meter: new RateMeter(), last: performance.now() });
          write(`[${e.stage}] ${e.title}\n`);
          break;
        case 'progress': {
          const m = meters.get(e.stage) ?? { meter: new RateMeter(), last: performance.now() };
          meters.set(e.stage, m);
          m.meter.add(e.done);
          const now = performance.now();
          if (now - m.last >= intervalMs) {
            m.last = now;
            write(`[${e.stage}] ${formatProgress(e, m.meter.rate(), false)}\n`);
          }
          break;
        }
        case 'stage-end':
          write(`[${e.stage}] done in ${fmtMs(e.ms)}${e.detail ? `: ${e.detail}` : ''}\n`);
          break;
        case 'stage-skip':
          write(`[${e.stage}] skipped: ${e.reason}\n`);
          break;
        case 'log':
          if (e.level === 'warn') write(`warning: ${e.message}\n`);
          else if (e.level === 'info' || verbose) write(`${e.stage ? `[${e.stage}] ` : ''}${e.message}\n`);
          break;
      }
    },
    async done() {},
  };
}

export function silentRenderer(): Renderer {
  return { sink() {}, async done() {} };
}

interface Deferred {
  started: Promise<string>;
  start(title: string): void;
  finished: Promise<{ detail?: string; skipped?: string }>;
  finish(r: { detail?: string; skipped?: string }): void;
  fail(e: Error): void;
}

function deferred(): Deferred {
  let start!: (t: string) => void;
  let finish!: (r: { detail?: string; skipped?: string }) => void;
  let fail!: (e: Error) => void;
  let failStart!: (e: Error) => void;
  const started = new Promise<string>((res, rej) => {
    start = res;
    failStart = rej;
  });
  const finished = new Promise<{ detail?: string; skipped?: string }>((res, rej) => {
    finish = res;
    fail = rej;
  });
  started.catch(() => {});
  finished.catch(() => {});
  return { started, start, finished, finish, fail: (e) => (failStart(e), fail(e)) };
}

/** Stages run in the pipeline; listr2 only mirrors them, each task waiting for its stage's events (their texts escaped first). */
export function listrRenderer(
  stages: { id: StageId; title: string }[],
  verbose: boolean,
): Renderer & { fail(e: Error): void } {
  const d = new Map<StageId, Deferred>(stages.map((s) => [s.id, deferred()]));
  const tasks = new Map<
    StageId,
    { task: ListrTaskWrapper<unknown, ListrRendererFactory, ListrRendererFactory>; title: string; meter: RateMeter }
  >();
  const list = new (listr2().Listr)(
    stages.map((s) => ({
      title: s.title,
      task: async (_ctx: unknown, task: ListrTaskWrapper<unknown, ListrRendererFactory, ListrRendererFactory>) => {
        const dd = d.get(s.id)!;
        const title = await Promise.race([dd.started, dd.finished.then((r) => r.skipped ?? '')]);
        if (title) task.title = title;
        tasks.set(s.id, { task, title: task.title ?? s.title, meter: new RateMeter() });
        const r = await dd.finished;
        const t = tasks.get(s.id);
        tasks.delete(s.id);
        if (t) task.title = t.title;
        if (r.skipped !== undefined) {
          task.skip(`${s.title}: ${r.skipped}`);
          return;
        }
        task.title = `${task.title}${r.detail ? ` — ${r.detail}` : ''}`;
      },
    })),
    {
      concurrent: false,
      exitOnError: true,
      rendererOptions: { collapseSubtasks: false },
      registerSignalListeners: false,
    },
  );
  const running = list.run().catch(() => {});
  return {
    sink(event) {
      const e = printableEvent(event);
      if (e.type === 'stage-start') d.get(e.stage)?.start(e.title);
      else if (e.type === 'stage-end')
        d.get(e.stage)?.finish({ detail: `${e.detail ? `${e.detail}, ` : ''}${fmtMs(e.ms)}` });
      else if (e.type === 'stage-skip') d.get(e.stage)?.finish({ skipped: e.reason });
      else if (e.type === 'progress') {
        const t = tasks.get(e.stage);
        if (t) {
          t.meter.add(e.done);
          t.task.title = `${t.title} ${formatProgress(e, t.meter.rate(), true)}`;
        }
      } else if (e.type === 'log' && (e.level === 'warn' || verbose))
        stderr(`${e.level === 'warn' ? 'warning: ' : ''}${e.message}\n`);
    },
    fail(e) {
      for (const x of d.values()) x.fail(e);
    },
    async done(ok) {
      if (!ok) for (const x of d.values()) x.fail(new Error('failed'));
      await running;
    },
  };
}
