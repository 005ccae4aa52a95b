// Reusable I/O buffers (docs/PERFORMANCE.md): READ reply buffers, and WRITE payloads that arrived
// in more than one socket chunk. Such a buffer is allocated, filled, used once and dropped,
// thousands of times a second; giving it back after its last use saves the allocation, the page
// faults on fresh memory and, for large requests, the full garbage collections V8 runs when
// external memory grows quickly.
//
// Buffers are kept by exact size (clients repeat a few sizes), only from MIN_POOLED bytes (smaller
// ones come from Node's own slab), and at most `maxIdleBytes` of them wait idle; more are dropped
// for the garbage collector. One pool serves every connection of the process (one thread).
//
// Who takes which buffer and who gives it back is decided in one place: io-buffers.ts.

const MIN_POOLED = 4096;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private readonly mine = new WeakSet<Buffer>();
  private readonly maxIdleBytes: number;
  private idle = 0;

  constructor(maxIdleBytes: number) {
    this.maxIdleBytes = maxIdleBytes;
  }

  /** A buffer of exactly `size` bytes, contents undefined. */
  take(size: number): Buffer {
    if (size < MIN_POOLED) return Buffer.allocUnsafe(size);
    const buf = this.free.get(size)?.pop();
    if (buf !== undefined) {
      this.idle -= size;
      return buf;
    }
    const fresh = Buffer.allocUnsafeSlow(size);
    this.mine.add(fresh);
    return fresh;
  }

  /** Whether `buf` came from take() and may be given back. */
  owns(buf: Buffer): boolean {
    return this.mine.has(buf);
  }

  /** Returns a buffer from take() that nothing uses any more. */
  give(buf: Buffer): void {
    if (!this.mine.has(buf) || this.idle + buf.length > this.maxIdleBytes) return;
    let list = this.free.get(buf.length);
    if (list === undefined) {
      list = [];
      this.free.set(buf.length, list);
    }
    list.push(buf);
    this.idle += buf.length;
  }

  /** Bytes waiting idle in the pool. */
  get idleBytes(): number {
    return this.idle;
  }
}
