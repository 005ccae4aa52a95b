// Where a request's payload lands. Over a socket that reads into our buffers (socket-receive.ts),
// an accepted payload of DIRECT_PAYLOAD_BYTES or more gets its own pooled buffer and the socket
// reads straight into it; smaller ones stay views into the slab they arrived in (one view: no
// copy; several: gathered once into a pooled buffer). A rejected payload is dropped as it
// arrives, never buffered whole. One per connection, reused for every request.
import type { ByteQueue } from '../protocol/framer.ts';
import { takePayloadBuffer } from './io-buffers.ts';

/** WRITE payloads this large are read straight into their own buffer; smaller ones stay views. */
const DIRECT_PAYLOAD_BYTES = 64 * 1024;

export class PayloadLanding {
  /** Payload bytes still to come. */
  private remaining = 0;
  /** Accepted: keep the bytes; rejected: drop them. */
  private keep = false;
  /** A large accepted payload's own buffer, which the socket reads straight into. */
  private into: Buffer | null = null;
  private readonly views: Buffer[] = [];
  private readonly copying: Buffer[] = [];
  private lastDirect = false;

  /** The last request header read was a WRITE whose payload went straight to its own buffer. */
  get lastWasDirect(): boolean {
    return this.lastDirect;
  }

  /**
   * A request header announced `length` payload bytes (0: none); `accepted` says whether to keep
   * them, `directReads` whether the socket can read into a buffer of ours (Transport).
   */
  expect(length: number, accepted: boolean, directReads: boolean): void {
    this.remaining = length;
    this.keep = accepted;
    this.into = directReads && accepted && length >= DIRECT_PAYLOAD_BYTES ? takePayloadBuffer(length) : null;
    this.lastDirect = this.into !== null;
  }

  /** The rest of a large payload's own buffer, for the socket to read straight into; null if none. */
  directTarget(): Buffer | null {
    const into = this.into;
    return into !== null && this.remaining > 0 ? into.subarray(into.length - this.remaining) : null;
  }

  /** `n` bytes were read straight into directTarget()'s buffer. */
  receivedDirect(n: number): void {
    this.remaining -= n;
  }

  /** Moves the payload's queued bytes out of `queue`; true once all of it has arrived. */
  collect(queue: ByteQueue): boolean {
    if (this.remaining === 0) return true;
    if (queue.length === 0) return false;
    const n = Math.min(this.remaining, queue.length);
    if (this.into !== null) this.copyInto(queue, n, this.into, this.into.length - this.remaining);
    else if (this.keep) queue.takeViews(n, this.views);
    else queue.skip(n);
    this.remaining -= n;
    return this.remaining === 0;
  }

  /** The whole payload (null when there is none or it was rejected); clears the way for the next. */
  take(): Buffer | null {
    const views = this.views;
    const payload = this.into ?? (views.length === 0 ? null : views.length === 1 ? views[0]! : gather(views));
    this.into = null;
    views.length = 0;
    return payload;
  }

  /** Moves the first `n` queued bytes into `out` at `at`. */
  private copyInto(queue: ByteQueue, n: number, out: Buffer, at: number): void {
    const views = this.copying;
    queue.takeViews(n, views);
    for (const v of views) at += v.copy(out, at);
    views.length = 0;
  }
}

/** One payload from the views it arrived in, copied once into a pooled buffer. */
function gather(views: readonly Buffer[]): Buffer {
  let total = 0;
  for (const v of views) total += v.length;
  const out = takePayloadBuffer(total);
  let at = 0;
  for (const v of views) at += v.copy(out, at);
  return out;
}
