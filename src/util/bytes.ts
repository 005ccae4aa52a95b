// Little-endian field writer and reader for on-disk codecs. 64-bit fields are carried as
// JavaScript numbers (two u32 halves), so they are exact up to 2^53; larger values are rejected.
// The reader never asserts: running off the end or a value above 2^53 raises a CORRUPT error.
import { IomapdError } from './errors.ts';

const TWO32 = 0x1_0000_0000;

export class ByteWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.alloc(initial);
  }

  get length(): number {
    return this.pos;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 field out of range: ${v}`);
    this.room(8);
    this.buf.writeUInt32LE(v % TWO32, this.pos);
    this.buf.writeUInt32LE(Math.floor(v / TWO32), this.pos + 4);
    this.pos += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** u16 byte length, then UTF-8 bytes. */
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.u16(b.length).bytes(b);
  }

  /** Reserves n zero bytes and returns their offset (for fields patched later). */
  skip(n: number): number {
    this.room(n);
    const at = this.pos;
    this.buf.fill(0, at, at + n);
    this.pos += n;
    return at;
  }

  patchU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v >>> 0, at);
  }

  /** The bytes written so far (a view, not a copy). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class ByteReader {
  private pos: number;
  private readonly end: number;
  private readonly buf: Buffer;
  private readonly what: string;

  constructor(buf: Buffer, what: string, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.what = what;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.end) {
      throw new IomapdError('CORRUPT', `${this.what}: truncated at byte ${this.pos}`);
    }
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): number {
    this.need(8);
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    if (hi >= 0x20_0000) throw new IomapdError('CORRUPT', `${this.what}: 64-bit field above 2^53`);
    return hi * TWO32 + lo;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  str(): string {
    const n = this.u16();
    return this.bytes(n).toString('utf8');
  }
}

export function corrupt(what: string): IomapdError {
  return new IomapdError('CORRUPT', what);
}
