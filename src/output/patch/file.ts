// Small positional reads and writes for patching fields of a finished disk image in place.
import { fstatSync, readSync, writeSync } from 'node:fs';
import { Img2vmError } from '../../core/errors.js';

export interface PatchFile {
  fd: number;
  size: number;
  /** The format being patched, for error messages. */
  format: string;
}

export function fileOf(fd: number, format: string): PatchFile {
  return { fd, size: fstatSync(fd).size, format };
}

export function readAt(f: PatchFile, offset: number, length: number): Buffer {
  if (offset < 0 || offset + length > f.size)
    unexpected(f, `a ${length}-byte structure at ${offset} lies outside the ${f.size}-byte file`);
  const b = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(f.fd, b, done, length - done, offset + done);
    if (n === 0) unexpected(f, `the file ended at ${offset + done}`);
    done += n;
  }
  return b;
}

export function writeAt(f: PatchFile, b: Uint8Array, offset: number): void {
  let done = 0;
  while (done < b.length) done += writeSync(f.fd, b, done, b.length - done, offset + done);
}

/**
 * The file is not laid out the way the qemu-img versions img2vm knows write it: patching blindly could corrupt it,
 * so stop and say which qemu-img produced it.
 */
export function unexpected(f: PatchFile, why: string): never {
  throw new Img2vmError(
    'toolFailed',
    `cannot make the ${f.format} output reproducible: ${why}`,
    'qemu-img wrote a file img2vm does not recognise; report this with the output of `qemu-img --version`',
  );
}
