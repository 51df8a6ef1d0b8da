// Where disk bytes go: a raw image file, or an output format written directly (qcow2 clusters), addressed by disk offset.
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';

export interface BlockTarget {
  /** Writes buf at a byte offset of the virtual disk. Ranges never written read as zeros. */
  write(buf: Uint8Array, offset: number): void;
  /** Reads into buf from a byte offset of the virtual disk; returns the bytes read (short only past the end). */
  read(buf: Uint8Array, offset: number): number;
  /** The virtual size in bytes; writes past it grow it. */
  size(): number;
  /** Sets the virtual size (a raw file is truncated or extended sparsely). */
  resize(bytes: number): void;
  /** Writes out whatever is buffered (format metadata, tables) and releases the file. */
  close(): void;
  /** Releases the file without writing what is buffered: the run failed and the file is being removed. */
  discard?(): void;
}

/** A sparse raw image file. */
export class RawFileTarget implements BlockTarget {
  private fd: number | undefined;

  constructor(
    readonly path: string,
    opts: { create?: boolean } = {},
  ) {
    this.fd = openSync(path, opts.create === false ? 'r+' : 'w+', 0o644);
  }

  private get handle(): number {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    return this.fd;
  }

  write(buf: Uint8Array, offset: number): void {
    let done = 0;
    while (done < buf.length) done += writeSync(this.handle, buf, done, buf.length - done, offset + done);
  }

  read(buf: Uint8Array, offset: number): number {
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.handle, buf, done, buf.length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  size(): number {
    return fstatSync(this.handle).size;
  }

  resize(bytes: number): void {
    ftruncateSync(this.handle, bytes);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  discard(): void {
    this.close();
  }
}
