// A LUKS2 volume written in one pass: every sector the file-system writer writes is encrypted on its way to the disk.
//
// The writer sees a plain BlockTarget at the data segment's offsets. Sectors it never writes must read back as
// zeros (the ext4 writer relies on that, as on a sparse file), so which sectors were written is tracked and, once
// the file system is finished, the rest of the segment is written as encrypted zeros; then the headers and the
// keyslot go in front. No device mapper, no cryptsetup, no root.
import type { BlockTarget } from '../target.js';
import { luksHeaderArea, LUKS_DATA_OFFSET, type LuksParams } from './header.js';
import { xtsDecrypt, xtsEncrypt } from './xts.js';

/** How much is encrypted (and written) at once when filling the sectors never written. */
const FILL_CHUNK = 1024 * 1024;

export interface LuksSecrets {
  masterKey: Buffer;
  passphrase: Buffer;
  /** Salts and stripes: the system's randomness, or a seeded one for reproducible bytes. */
  random: (n: number) => Buffer;
}

export class LuksVolume implements BlockTarget {
  private written = new Uint8Array(1 << 16);
  private readonly sector: number;

  /** dataStart: the disk offset of the data segment (the partition's start + LUKS_DATA_OFFSET). */
  constructor(
    private readonly inner: BlockTarget,
    private readonly dataStart: number,
    private readonly params: LuksParams,
    private readonly secrets: LuksSecrets,
  ) {
    this.sector = params.sectorSize;
  }

  private isWritten(s: number): boolean {
    return ((this.written[s >> 3] ?? 0) & (1 << (s & 7))) !== 0;
  }

  private mark(from: number, to: number): void {
    const need = (to >> 3) + 1;
    if (need > this.written.length) {
      const grown = new Uint8Array(Math.max(need, this.written.length * 2));
      grown.set(this.written);
      this.written = grown;
    }
    for (let s = from; s < to; s++) this.written[s >> 3]! |= 1 << (s & 7);
  }

  private rel(offset: number): number {
    const r = offset - this.dataStart;
    if (r < 0) throw new Error(`a write at ${offset} is before the LUKS2 data segment at ${this.dataStart}`);
    return r;
  }

  /** The plaintext of whole sectors [first, first+count): decrypted where written, zeros elsewhere. */
  private plain(first: number, count: number): Buffer {
    const cipher = Buffer.alloc(count * this.sector);
    this.inner.read(cipher, this.dataStart + first * this.sector);
    const out = xtsDecrypt(this.secrets.masterKey, cipher, first, this.sector);
    for (let i = 0; i < count; i++) if (!this.isWritten(first + i)) out.fill(0, i * this.sector, (i + 1) * this.sector);
    return out;
  }

  private put(first: number, plain: Uint8Array): void {
    this.inner.write(
      xtsEncrypt(this.secrets.masterKey, plain, first, this.sector),
      this.dataStart + first * this.sector,
    );
    this.mark(first, first + plain.length / this.sector);
  }

  write(buf: Uint8Array, offset: number): void {
    if (buf.length === 0) return;
    const r = this.rel(offset);
    const first = Math.floor(r / this.sector);
    const end = Math.ceil((r + buf.length) / this.sector);
    if (r % this.sector === 0 && buf.length % this.sector === 0) {
      this.put(first, buf);
      return;
    }
    // A write that does not cover whole sectors: the sectors around it read, patched and written back.
    const whole = this.plain(first, end - first);
    whole.set(buf, r - first * this.sector);
    this.put(first, whole);
  }

  read(buf: Uint8Array, offset: number): number {
    const r = this.rel(offset);
    const first = Math.floor(r / this.sector);
    const end = Math.ceil((r + buf.length) / this.sector);
    const whole = this.plain(first, end - first);
    buf.set(whole.subarray(r - first * this.sector, r - first * this.sector + buf.length));
    return buf.length;
  }

  size(): number {
    return this.inner.size();
  }

  resize(bytes: number): void {
    this.inner.resize(bytes);
  }

  /** The disk's own target is closed by whoever opened it. */
  close(): void {}

  /**
   * Finishes the volume once the file system in it is: the sectors of its size never written become encrypted
   * zeros, then the keyslot and both headers are written in front of the data.
   */
  async finish(fsBytes: number, signal: AbortSignal): Promise<void> {
    const sectors = Math.ceil(fsBytes / this.sector);
    const zeros = Buffer.alloc(FILL_CHUNK);
    const perChunk = FILL_CHUNK / this.sector;
    for (let s = 0; s < sectors;) {
      if (this.isWritten(s)) {
        s++;
        continue;
      }
      let e = s + 1;
      while (e < sectors && e - s < perChunk && !this.isWritten(e)) e++;
      this.put(s, zeros.subarray(0, (e - s) * this.sector));
      s = e;
      if ((s & 0xffff) === 0) signal.throwIfAborted();
    }
    const area = await luksHeaderArea(
      this.params,
      this.secrets.masterKey,
      this.secrets.passphrase,
      this.secrets.random,
    );
    const start = this.dataStart - LUKS_DATA_OFFSET;
    this.inner.write(area.primary, start);
    this.inner.write(area.secondary, start + area.primary.length);
    this.inner.write(area.keyslot.bytes, start + area.keyslot.offset);
  }
}
