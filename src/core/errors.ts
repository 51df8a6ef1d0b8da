// Typed, user-facing failures: every error a user can cause carries a message, a hint and an exit code.

export const ExitCode = {
  internal: 1,
  usage: 2,
  imageNotFound: 3,
  daemonUnreachable: 4,
  toolMissing: 5,
  unsupportedDistro: 6,
  outputNotWritable: 7,
  sizeTooSmall: 8,
  buildFailed: 9,
  badImage: 10,
  toolFailed: 11,
  // `img2vm build`: the Dockerfile's build failed (the builder's message is in the error)
  imageBuildFailed: 12,
  // `img2vm test` outcomes
  testTimeout: 20,
  kernelPanic: 21,
  qemuFailed: 22,
  loginFailed: 23,
  commandFailed: 24,
  interrupted: 130,
} as const;

export type ExitCodeName = keyof typeof ExitCode;

export class Img2vmError extends Error {
  readonly kind: ExitCodeName;
  readonly hint: string | undefined;
  readonly exitCode: number;

  constructor(kind: ExitCodeName, message: string, hint?: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options);
    this.name = 'Img2vmError';
    this.kind = kind;
    this.hint = hint;
    this.exitCode = options?.exitCode ?? ExitCode[kind];
  }
}

export function isImg2vmError(e: unknown): e is Img2vmError {
  return e instanceof Img2vmError;
}

/** The signals that interrupt a run (and that the CLI turns into an abort). */
export const INTERRUPT_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** The shell's convention for a process ended by a signal: 128 + its number (SIGHUP 1, SIGINT 2, SIGTERM 15). */
export function signalExitCode(signal: string | undefined): number {
  return signal === 'SIGTERM' ? 143 : signal === 'SIGHUP' ? 129 : ExitCode.interrupted;
}

/**
 * Raised when the user interrupts (SIGINT/SIGTERM/SIGHUP); cleanup has run or is running. `after` names what was
 * already complete when the signal came (the output renamed into place), so the user is not told nothing was written.
 */
export class InterruptedError extends Img2vmError {
  readonly signalName: string;

  constructor(signal: string, o: { after?: string } = {}) {
    super(
      'interrupted',
      o.after ? `interrupted by ${signal} after ${o.after}` : `interrupted by ${signal}`,
      o.after
        ? 'that output is complete and stays; temporary files were removed'
        : 'nothing was written; temporary files were removed',
      { exitCode: signalExitCode(signal) },
    );
    this.signalName = signal;
  }
}
