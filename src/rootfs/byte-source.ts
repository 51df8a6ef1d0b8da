// Bytes pulled out of a stream of chunks for the tar reader: zero-copy slices, skips, and seeks over a file read by position.

/** A malformed or truncated archive; the caller turns it into a badImage error. */
export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

/** Pulls bytes out of an async iterator of chunks, handing out zero-copy slices. */
export class ByteSource {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private done = false;
  /** The offset in the input of the next byte to be handed out (bytes read and skipped so far). */
  position = 0;

  /**
   * seek, when given, moves the input on by n bytes without reading them (a file read by position): skipped content
   * is then never read at all, and nothing after the archive's end is read either.
   */
  constructor(
    private readonly it: AsyncIterator<Buffer | Uint8Array | string>,
    private readonly seek?: (n: number) => void,
  ) {}

  private async fill(): Promise<boolean> {
    while (this.off >= this.buf.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      const v = r.value;
      this.buf =
        typeof v === 'string'
          ? Buffer.from(v, 'latin1')
          : Buffer.isBuffer(v)
            ? v
            : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.off = 0;
    }
    return true;
  }

  /** Up to max bytes (a slice of the current chunk), or null at end of input. */
  async read(max: number): Promise<Buffer | null> {
    if (this.off >= this.buf.length && !(await this.fill())) return null;
    const n = Math.min(max, this.buf.length - this.off);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    this.position += n;
    return b;
  }

  /** Exactly n bytes; null if the input ended before the first byte, an error if it ended midway. */
  async readExact(n: number, what: string): Promise<Buffer | null> {
    const first = await this.read(n);
    if (first === null) return null;
    if (first.length === n) return first;
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const b = await this.read(n - got);
      if (b === null) throw new TarFormatError(`unexpected end of data in ${what}`);
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts, n);
  }

  /** Exactly n bytes if they are already buffered (a zero-copy slice, consumed), else null without consuming anything. */
  takeBuffered(n: number): Buffer | null {
    if (this.buf.length - this.off < n) return null;
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    this.position += n;
    return b;
  }

  async skip(n: number, what: string): Promise<void> {
    if (this.seek) {
      const buffered = Math.min(n, this.buf.length - this.off);
      this.off += buffered;
      this.position += n;
      if (n > buffered) this.seek(n - buffered);
      return;
    }
    while (n > 0) {
      const b = await this.read(n);
      if (b === null) throw new TarFormatError(`unexpected end of data in ${what}`);
      n -= b.length;
    }
  }

  async drain(): Promise<void> {
    // A file read by position has no checksum to reach; what follows the archive's end is left unread.
    if (this.seek) {
      await this.cancel();
      return;
    }
    while ((await this.read(1 << 30)) !== null) {
      /* discard: reading to the end lets the decompressor verify its checksum */
    }
  }

  async cancel(): Promise<void> {
    this.done = true;
    await this.it.return?.();
  }
}
