// Storage held in memory; writes are durable at once. Used by tests and as the base of the
// crash simulator.
import { IomapdError } from '../util/errors.ts';
import type { Storage } from './storage.ts';

export class MemoryStorage implements Storage {
  private data: Buffer;
  private length: number;
  private closed = false;

  constructor(initial?: Buffer) {
    this.data = initial ? Buffer.from(initial) : Buffer.alloc(0);
    this.length = this.data.length;
  }

  /** A copy of the current contents. */
  snapshot(): Buffer {
    return Buffer.from(this.data.subarray(0, this.length));
  }

  private live(): void {
    if (this.closed) throw new IomapdError('IO', 'storage is closed');
  }

  private grow(size: number): void {
    if (size <= this.data.length) return;
    const next = Buffer.alloc(Math.max(size, this.data.length * 2));
    this.data.copy(next, 0, 0, this.length);
    this.data = next;
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    this.live();
    const avail = Math.max(0, Math.min(buf.length, this.length - offset));
    if (avail > 0) this.data.copy(buf, 0, offset, offset + avail);
    buf.fill(0, avail);
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    this.live();
    const end = offset + buf.length;
    this.grow(end);
    if (end > this.length) {
      this.data.fill(0, this.length, end);
      this.length = end;
    }
    buf.copy(this.data, offset);
  }

  async sync(): Promise<void> {
    this.live();
  }

  async size(): Promise<number> {
    this.live();
    return this.length;
  }

  async resize(size: number): Promise<void> {
    this.live();
    this.grow(size);
    if (size > this.length) this.data.fill(0, this.length, size);
    this.length = size;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
