// Owns every resource a run creates (temp dirs, images, processes, partial files) and releases them in reverse order.
export type Cleanup = () => unknown | Promise<unknown>;

export class Scope {
  private readonly cleanups: { label: string; fn: Cleanup }[] = [];
  private closed = false;

  /** Registers a cleanup; returns a function that runs it early (and only once). */
  defer(label: string, fn: Cleanup): () => Promise<void> {
    const entry = { label, fn };
    this.cleanups.push(entry);
    return async () => {
      const i = this.cleanups.indexOf(entry);
      if (i < 0) return;
      this.cleanups.splice(i, 1);
      await fn();
    };
  }

  /** Forgets a cleanup (e.g. the output file once it has been renamed into place). */
  release(fn: Cleanup): void {
    const i = this.cleanups.findIndex((c) => c.fn === fn);
    if (i >= 0) this.cleanups.splice(i, 1);
  }

  /** Runs every cleanup, newest first; a failing cleanup does not stop the others. */
  async close(onError?: (label: string, e: unknown) => void): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.cleanups.length) {
      const c = this.cleanups.pop()!;
      try {
        await c.fn();
      } catch (e) {
        onError?.(c.label, e);
      }
    }
  }
}
