// Writes a regular file's content into a staged tree, leaving all-zero 4 KiB blocks as holes.
import { ftruncateSync, writeSync } from 'node:fs';
import { TarFormatError } from './tar.js';

const BLOCK = 4096;
const ZERO = Buffer.alloc(BLOCK);

/** Writes a file's content, leaving all-zero 4 KiB blocks as holes; counts the blocks it wrote. */
export class SparseWriter {
  private readonly carry = Buffer.alloc(BLOCK);
  private carryLen = 0;
  /** File offset of the first byte not yet written or skipped; always a multiple of BLOCK. */
  private pos = 0;
  blocks = 0;

  constructor(private readonly fd: number) {}

  write(chunk: Buffer): void {
    let i = 0;
    const len = chunk.length;
    if (this.carryLen > 0) {
      const n = Math.min(BLOCK - this.carryLen, len);
      chunk.copy(this.carry, this.carryLen, 0, n);
      this.carryLen += n;
      i = n;
      if (this.carryLen < BLOCK) return;
      if (!isZero(this.carry, 0, BLOCK)) {
        writeAll(this.fd, this.carry, 0, BLOCK, this.pos);
        this.blocks++;
      }
      this.pos += BLOCK;
      this.carryLen = 0;
    }
    // Consecutive non-zero blocks go out in one write, straight from the chunk.
    let runStart = -1;
    let runPos = 0;
    for (; i + BLOCK <= len; i += BLOCK, this.pos += BLOCK) {
      if (isZero(chunk, i, BLOCK)) {
        if (runStart >= 0) {
          writeAll(this.fd, chunk, runStart, i - runStart, runPos);
          runStart = -1;
        }
      } else {
        if (runStart < 0) {
          runStart = i;
          runPos = this.pos;
        }
        this.blocks++;
      }
    }
    if (runStart >= 0) writeAll(this.fd, chunk, runStart, i - runStart, runPos);
    if (i < len) {
      chunk.copy(this.carry, 0, i, len);
      this.carryLen = len - i;
    }
  }

  /** n bytes of hole: whole blocks are skipped, never written (end() sets the size, so a trailing hole stays one). */
  hole(n: number): void {
    if (this.carryLen > 0) {
      const k = Math.min(n, BLOCK - this.carryLen);
      this.write(ZERO.subarray(0, k));
      n -= k;
    }
    if (n === 0) return;
    const whole = n - (n % BLOCK);
    this.pos += whole;
    if (n > whole) this.write(ZERO.subarray(0, n - whole));
  }

  /** Flushes the tail and sets the size (which also makes trailing holes). */
  end(size: number): number {
    if (this.carryLen > 0 && !isZero(this.carry, 0, this.carryLen)) {
      writeAll(this.fd, this.carry, 0, this.carryLen, this.pos);
      this.blocks++;
    }
    if (this.pos + this.carryLen !== size)
      throw new TarFormatError(`file content is ${this.pos + this.carryLen} bytes, header says ${size}`);
    ftruncateSync(this.fd, size);
    return this.blocks;
  }
}

function isZero(b: Buffer, off: number, len: number): boolean {
  return b.compare(ZERO, 0, len, off, off + len) === 0;
}

function writeAll(fd: number, b: Buffer, off: number, len: number, pos: number): void {
  while (len > 0) {
    const n = writeSync(fd, b, off, len, pos);
    off += n;
    len -= n;
    pos += n;
  }
}
