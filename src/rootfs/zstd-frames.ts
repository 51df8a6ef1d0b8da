// Walks a zstd stream's frames without decompressing them, so that a stream cut short is an error under Node's own zstd.
// Node's decoder (22.15 and later) ends quietly at a truncated frame, where the zstd tool says "unexpected end of file".
import { Transform } from 'node:stream';

/** The stream is not a whole sequence of zstd frames (truncated, or bytes that are no frame). */
export class ZstdFrameError extends Error {
  readonly code = 'ERR_ZSTD_FRAMES';
  constructor(message: string) {
    super(message);
    this.name = 'ZstdFrameError';
  }
}

// RFC 8878, section 3.1: a frame's magic, and the sixteen magics of skippable frames (0x184D2A50 to 0x184D2A5F).
const FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC = 0x184d2a50;
const DICT_ID_BYTES = [0, 1, 2, 4];
// Frame_Content_Size bytes by FCS flag; flag 0 means 1 byte with Single_Segment set, else none.
const FCS_BYTES = [0, 2, 4, 8];

type State = 'magic' | 'skippable-size' | 'descriptor' | 'header' | 'block' | 'checksum';

/** Feed it every byte of the stream in order (push), then end(): either throws a ZstdFrameError. */
export class ZstdFrames {
  private state: State = 'magic';
  private readonly field = Buffer.alloc(14);
  private need = 4;
  private have = 0;
  /** Payload bytes (block content, skippable frame data) to pass over before the next field. */
  private skip = 0;
  private checksum = false;
  private frames = 0;
  private offset = 0;

  push(b: Uint8Array): void {
    let i = 0;
    while (i < b.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, b.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(this.need - this.have, b.length - i);
      this.field.set(b.subarray(i, i + n), this.have);
      this.have += n;
      i += n;
      if (this.have < this.need) break;
      const at = this.offset + i - this.need;
      this.have = 0;
      this.step(at);
    }
    this.offset += b.length;
  }

  end(): void {
    if (this.state !== 'magic' || this.have !== 0 || this.skip !== 0) {
      throw new ZstdFrameError(`the zstd stream ends inside a frame after ${this.offset} bytes (it is truncated)`);
    }
    if (this.frames === 0) throw new ZstdFrameError('the zstd stream holds no frame');
  }

  private step(at: number): void {
    const f = this.field;
    switch (this.state) {
      case 'magic': {
        const m = f.readUInt32LE(0);
        if (m === FRAME_MAGIC) this.expect('descriptor', 1);
        else if ((m & 0xfffffff0) >>> 0 === SKIPPABLE_MAGIC) this.expect('skippable-size', 4);
        else throw new ZstdFrameError(`no zstd frame at byte ${at} (magic 0x${m.toString(16).padStart(8, '0')})`);
        return;
      }
      case 'skippable-size':
        this.skip = f.readUInt32LE(0);
        this.frames++;
        this.expect('magic', 4);
        return;
      case 'descriptor': {
        const d = f[0]!;
        if (d & 0x08) throw new ZstdFrameError(`zstd frame header at byte ${at} sets the reserved bit`);
        const single = (d >> 5) & 1;
        this.checksum = ((d >> 2) & 1) === 1;
        const fcs = d >> 6;
        const len = (single ? 0 : 1) + DICT_ID_BYTES[d & 3]! + (fcs === 0 ? single : FCS_BYTES[fcs]!);
        if (len > 0) this.expect('header', len);
        else this.expect('block', 3);
        return;
      }
      case 'header':
        this.expect('block', 3);
        return;
      case 'block': {
        const v = f[0]! | (f[1]! << 8) | (f[2]! << 16);
        const type = (v >> 1) & 3;
        if (type === 3) throw new ZstdFrameError(`zstd block at byte ${at} has the reserved type`);
        // An RLE block carries one byte however many it stands for; raw and compressed blocks carry their size.
        this.skip = type === 1 ? 1 : v >>> 3;
        if ((v & 1) === 0) this.expect('block', 3);
        else if (this.checksum) this.expect('checksum', 4);
        else this.endFrame();
        return;
      }
      case 'checksum':
        this.endFrame();
        return;
    }
  }

  private endFrame(): void {
    this.frames++;
    this.expect('magic', 4);
  }

  private expect(state: State, bytes: number): void {
    this.state = state;
    this.need = bytes;
  }
}

/** A pass-through stream that fails (ZstdFrameError) unless what passed is whole zstd frames. */
export function zstdFrameCheck(): Transform {
  const frames = new ZstdFrames();
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        frames.push(chunk);
      } catch (e) {
        cb(e as Error);
        return;
      }
      cb(null, chunk);
    },
    flush(cb) {
      try {
        frames.end();
      } catch (e) {
        cb(e as Error);
        return;
      }
      cb();
    },
  });
}
