// Events that stages emit (progress included); only cli/ turns them into output.
export type StageId = 'source' | 'guest' | 'rootfs' | 'disk' | 'boot' | 'output' | 'vm';

/** What a progress count measures: bytes read or written, or entries (files, layers) handled. */
export type ProgressUnit = 'bytes' | 'entries';

export type VmMilestone = 'firmware' | 'kernel' | 'init' | 'login' | 'marker' | 'ready';

/** The machine a VM command starts, as it is reported (vm/machine.ts's Machine has this shape and more). */
export interface MachineSummary {
  disk: string;
  format: string;
  firmware: string;
  firmwareReason: string;
  accel: string;
  accelReason: string;
}

export type Img2vmEvent =
  | { type: 'stage-start'; stage: StageId; title: string }
  | { type: 'stage-end'; stage: StageId; ms: number; detail?: string }
  | { type: 'stage-skip'; stage: StageId; reason: string }
  /** done of total (total unknown: undefined); emitted at most a few times a second per stage. */
  | { type: 'progress'; stage: StageId; done: number; total?: number; unit: ProgressUnit; what?: string }
  | { type: 'log'; level: 'info' | 'warn' | 'debug'; message: string; stage?: StageId }
  | { type: 'vm-machine'; stage: 'vm'; machine: MachineSummary }
  | { type: 'vm-milestone'; stage: 'vm'; name: VmMilestone; seconds: number }
  | { type: 'vm-console'; stage: 'vm'; text: string }
  | { type: 'vm-phase'; stage: 'vm'; phase: 'login' | 'command' };

export type EventSink = (event: Img2vmEvent) => void;

export const nullSink: EventSink = () => {};

/**
 * A progress reporter for one stage: counts may be reported as often as convenient, events go out at most every
 * intervalMs (and always for the final count), so a loop over 100,000 files does not flood the renderer.
 */
export function progress(
  sink: EventSink,
  stage: StageId,
  unit: ProgressUnit,
  total?: number,
  what?: string,
  intervalMs = 200,
): {
  add(n: number): void;
  set(done: number): void;
  setTotal(total: number | undefined): void;
  end(): void;
} {
  let done = 0;
  let last = 0;
  let tot = total;
  const emit = (force: boolean) => {
    const now = performance.now();
    if (!force && now - last < intervalMs) return;
    last = now;
    sink({ type: 'progress', stage, done, total: tot, unit, what });
  };
  return {
    add(n) {
      done += n;
      emit(false);
    },
    set(d) {
      done = d;
      emit(false);
    },
    setTotal(t) {
      tot = t;
    },
    end() {
      emit(true);
    },
  };
}
