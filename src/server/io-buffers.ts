// Who takes a pooled I/O buffer and who gives it back: the only code that touches the process's
// pool (buffer-pool.ts says why buffers are pooled at all).
//
//   buffer          taken by                               given back by
//   READ reply      replies.ts (allocReadReply)            transport.ts, from the callback of the
//                                                          socket write that sent it (writeReply);
//                                                          dispatch.ts, when the READ is answered
//                                                          as holes instead (replyUnused)
//   WRITE payload   payload-landing.ts (a large payload's  connection.ts, once its request succeeded
//                   own buffer, or views gathered)         (payloadDone)
//
// The rule that keeps this safe: a buffer is given back only by the one who holds it last, after
// its last use, and only when that use succeeded (a device never keeps a payload after its write
// settles). A buffer whose use failed is never given back.
import type { Socket } from 'node:net';
import { BufferPool } from './buffer-pool.ts';

/** The process's reply and payload buffers: at most 32 MiB idle (QD32 of 1 MiB requests). */
const ioBuffers = new BufferPool(32 * 1024 * 1024);

/** A READ reply buffer of exactly `size` bytes. */
export function takeReplyBuffer(size: number): Buffer {
  return ioBuffers.take(size);
}

/** A buffer of exactly `size` bytes for one WRITE payload. */
export function takePayloadBuffer(size: number): Buffer {
  return ioBuffers.take(size);
}

/** A WRITE payload whose request succeeded: the device is done with it. */
export function payloadDone(payload: Buffer): void {
  ioBuffers.give(payload);
}

/** A READ reply buffer that will never be sent (the reply took another shape). */
export function replyUnused(reply: Buffer): void {
  ioBuffers.give(reply);
}

/** A reply buffer the socket has sent. */
export function replySent(reply: Buffer): void {
  ioBuffers.give(reply);
}

/** Writes one reply buffer; a pooled one comes back once the socket has sent it (never after a failed write: who knows). */
export function writeReply(socket: Socket, buf: Buffer): void {
  if (ioBuffers.owns(buf)) {
    socket.write(buf, (err) => {
      if (!err) replySent(buf);
    });
  } else {
    socket.write(buf);
  }
}
