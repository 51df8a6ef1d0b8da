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

  constructor(kind: ExitCodeName, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Img2vmError';
    this.kind = kind;
    this.hint = hint;
    this.exitCode = ExitCode[kind];
  }
}

export function isImg2vmError(e: unknown): e is Img2vmError {
  return e instanceof Img2vmError;
}

/** Raised when the user interrupts (SIGINT/SIGTERM); cleanup has run or is running. */
export class InterruptedError extends Img2vmError {
  constructor(signal: string) {
    super('interrupted', `interrupted by ${signal}`, 'nothing was written; temporary files were removed');
  }
}
