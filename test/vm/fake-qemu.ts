// A stand-in for a running QEMU: the test writes its console, reads what was typed, and ends it.
import { PassThrough } from 'node:stream';
import type { ConsoleProcess } from '../../src/vm/machine.js';

export class FakeQemu implements ConsoleProcess {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin = new PassThrough();
  readonly exited: Promise<{ exitCode?: number; signal?: string }>;
  /** Everything typed on the console. */
  typed = '';
  stops = 0;
  private end!: (r: { exitCode?: number; signal?: string }) => void;
  private over = false;

  constructor() {
    this.exited = new Promise((r) => (this.end = r));
    this.stdin.on('data', (d: Buffer) => {
      this.typed += d.toString('latin1');
      this.onTyped?.(this.typed);
    });
  }

  /** Called after each keystroke reaches the console. */
  onTyped: ((all: string) => void) | undefined;

  print(text: string): void {
    this.stdout.write(Buffer.from(text));
  }

  /** QEMU ends by itself (the guest powered off: exit 0). Output already written is read first. */
  exit(exitCode = 0): void {
    this.settle({ exitCode });
  }

  /** What img2vm's stop does: SIGTERM. */
  stop = async (): Promise<void> => {
    this.stops++;
    this.settle({ signal: 'SIGTERM' });
    await this.exited;
  };

  private settle(r: { exitCode?: number; signal?: string }): void {
    if (this.over) return;
    this.over = true;
    setImmediate(() => this.end(r));
  }
}

export const NONCE = '0123456789abcdef0123456789abcdef';
/** The boot nonce a test hands the guest; img2vm's init repeats it as host=. */
export const BOOT_NONCE = 'b0075eed'.repeat(4);
export const nonceLine = (nonce = NONCE, host = BOOT_NONCE) => `img2vm-init: nonce=${nonce} host=${host}\r\n`;
export const exitLine = (status: number, nonce = NONCE) => `\r\nimg2vm-exit: nonce=${nonce} status=${status}\r\n`;
