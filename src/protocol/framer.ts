// An incremental byte queue: socket chunks go in, whole headers and payloads come out without
// copying when a structure lies inside one chunk. It owns no socket and no timer.

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes already consumed from chunks[0]
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /**
   * The first `n` bytes (or all, if fewer are queued) as one buffer, without consuming them.
   * A view into the first chunk when it holds them all; otherwise a copy.
   */
  peek(n: number): Buffer {
    const want = Math.min(n, this.total);
    const first = this.chunks[0];
    if (first === undefined) return Buffer.alloc(0);
    if (first.length - this.head >= want) return first.subarray(this.head, this.head + want);
    const out = Buffer.allocUnsafe(want);
    let copied = 0;
    let skip = this.head;
    for (const c of this.chunks) {
      const n2 = Math.min(c.length - skip, want - copied);
      c.copy(out, copied, skip, skip + n2);
      copied += n2;
      skip = 0;
      if (copied === want) break;
    }
    return out;
  }

  /** Removes and returns the first `n` bytes; `n` must not exceed `length`. */
  take(n: number): Buffer {
    const out = this.peek(n);
    this.skip(n);
    return out;
  }

  /** Removes the first `n` bytes (`n` must not exceed `length`) as views into the queued chunks, appended to `out`: no copy. */
  takeViews(n: number, out: Buffer[]): void {
    let left = n;
    while (left > 0) {
      const first = this.chunks[0]!;
      const k = Math.min(first.length - this.head, left);
      out.push(first.subarray(this.head, this.head + k));
      this.skip(k);
      left -= k;
    }
  }

  /** Drops the first `n` bytes (or all, if fewer are queued); returns how many were dropped. */
  skip(n: number): number {
    let left = Math.min(n, this.total);
    const dropped = left;
    while (left > 0) {
      const first = this.chunks[0]!;
      const avail = first.length - this.head;
      if (avail > left) {
        this.head += left;
        break;
      }
      left -= avail;
      this.chunks.shift();
      this.head = 0;
    }
    this.total -= dropped;
    return dropped;
  }

  /** Removes and returns everything queued (used when a connection changes hands, e.g. STARTTLS). */
  drain(): Buffer {
    return this.take(this.total);
  }
}
