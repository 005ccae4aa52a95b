// Where a connection's incoming bytes land.
//
// By default Node reads a socket into a fresh 64 KiB buffer for every read and hands it over as a
// 'data' chunk. At hundreds of MiB/s of WRITE payload those buffers are external memory V8 must
// account for, and they set off a major garbage collection every few dozen megabytes (about a
// third of the process's CPU time on 1 MiB writes, docs/PERFORMANCE.md); the payload is then
// copied again into the buffer the device writes from. With `onread`, the socket reads into
// buffers we choose: a large WRITE payload straight into its own pooled buffer, everything else
// into the unused tail of a slab that is never written twice, so a view into it stays valid for
// as long as anyone holds it.
//
// net.Server offers no `onread` for the sockets it accepts, so an accepted socket (accepted
// paused) hands its handle to a new Socket made with one. That leans on `socket._handle`; where
// it is missing (any other Duplex) the caller keeps the socket and its 'data' events.
import { Socket } from 'node:net';

/** Slab size: one allocation serves many reads of headers and small payloads. */
const SLAB_BYTES = 256 * 1024;
/** A slab tail smaller than this is abandoned for a new slab rather than read into. */
const MIN_TAIL = 16 * 1024;

export interface ReceiveTarget {
  /** The buffer the next read goes into (called after every read). */
  next(): Buffer;
  /** `n` bytes were read into `buf`, a buffer next() returned. */
  received(n: number, buf: Buffer): void;
}

/**
 * Moves an accepted, paused socket's handle to a new Socket that reads into `target`'s buffers.
 * Returns the new socket (reading), or null when `socket` has no handle to move.
 */
export function adoptWithUserBuffers(socket: Socket, target: ReceiveTarget): Socket | null {
  const holder = socket as unknown as { _handle?: unknown };
  const handle = holder._handle;
  if (handle === undefined || handle === null || socket.destroyed) return null;
  holder._handle = null;
  const adopted = new Socket({
    handle: handle as never,
    allowHalfOpen: true,
    readable: true,
    writable: true,
    onread: {
      buffer: () => target.next(),
      callback: (n: number, buf: Uint8Array): boolean => {
        target.received(n, buf as Buffer);
        return true; // keep reading: the connection pauses the socket itself
      },
    },
  });
  // The listener counts the original as a connection until it is destroyed; without a handle
  // destroying it closes nothing.
  adopted.once('close', () => socket.destroy());
  return adopted;
}

/** Slab space for reads that are not a large payload's. Views it returns are never reused. */
export class ReceiveSlab {
  #slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  #used = 0;
  #offered: Buffer | null = null;

  /** The free tail of the slab, or its first `limit` bytes (a new slab when little is left). */
  offer(limit = SLAB_BYTES): Buffer {
    if (this.#slab.length - this.#used < MIN_TAIL) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.#used = 0;
    }
    this.#offered = this.#slab.subarray(this.#used, this.#used + limit);
    return this.#offered;
  }

  /** Whether `buf` is the tail offer() last returned. */
  offered(buf: Buffer): boolean {
    return buf === this.#offered;
  }

  /** Marks the first `n` bytes of the last offer as used; returns them. */
  take(n: number): Buffer {
    const view = this.#offered!.subarray(0, n);
    this.#used += n;
    this.#offered = null;
    return view;
  }
}
